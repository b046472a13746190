package topics

import (
	"fmt"
	"strings"
)

// Separator joins a source alias and a topic name under the prefix replication policy.
const Separator = "."

// Cycles recognises, under the prefix replication policy, source topics whose name says they
// were copied from the target cluster (or from the source itself): copying them would send
// records back where they came from, and with two flows europe→us and us→europe, on and on
// (`us.europe.us.orders`...). It follows MirrorMaker 2's MirrorSourceConnector.isCycle with
// DefaultReplicationPolicy: the name's first dot-separated part is the cluster it came from (a
// name with no dot, or nothing after the dot, is a local topic); when that is the target's
// alias the topic is a cycle, otherwise the rest of the name is looked at the same way, so that
// the whole chain of prefixes counts (`asia.us.orders`, which went us→asia→europe, is not copied
// to us).
//
// It adds one rule MirrorMaker 2 does not have: a prefix equal to the source's own alias is a
// cycle too. Under the prefix policy a cluster never holds a topic named after itself unless a
// copy came back to it (a ring whose aliases disagree) or it is mirrored into itself under
// another name (`europe.orders` on europe, from a target that is europe under another alias and
// bootstrap list): without this rule each refresh would nest one level more
// (`europe.europe.orders`, `europe.europe.europe.orders`...). The price is that a local topic
// named `<source alias>.<something>` is not mirrored under the prefix policy: it is logged and
// counted like any other cycle.
type Cycles struct {
	Source, Target string
}

// Check says whether topic is a cycle, and if so why, naming the alias and the part of the
// name that gave it away; "" when the topic may be mirrored.
func (c Cycles) Check(topic string) string {
	rest := topic
	for {
		from, upstream, ok := remote(rest)
		if !ok {
			return ""
		}
		switch {
		case c.Target != "" && from == c.Target:
			return fmt.Sprintf("its name carries the target's alias %q as a remote prefix (%q): it came from the target, "+
				"and copying it there would send its records back where they came from", from, rest)
		case c.Source != "" && from == c.Source:
			return fmt.Sprintf("its name carries the source's own alias %q as a remote prefix (%q): it is a copy that came "+
				"back to its own cluster, or the source is mirrored into itself under another alias; copying it would nest "+
				"one level more each time", from, rest)
		}
		rest = upstream
	}
}

// remote splits a topic name the way MirrorMaker 2's DefaultReplicationPolicy does: the part
// before the first separator is the cluster the topic came from and the rest is the upstream
// topic's name. ok is false for a local topic: no separator, or only separators after the first
// part (Java's String.split drops trailing empty strings, so "us." and "us.." are local).
func remote(topic string) (from, upstream string, ok bool) {
	from, upstream, found := strings.Cut(topic, Separator)
	if !found || strings.Trim(upstream, Separator) == "" {
		return "", "", false
	}
	return from, upstream, true
}

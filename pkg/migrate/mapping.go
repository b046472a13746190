package migrate

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// NoteKind says how a MirrorMaker 2 setting fared.
type NoteKind string

// The kinds of note. Settings mapped exactly make no note.
const (
	// NoEquivalent: kmirror has nothing that does this; the setting is dropped.
	NoEquivalent NoteKind = "no equivalent"
	// Approximated: kmirror does something close, written as said.
	Approximated NoteKind = "approximated"
	// Unknown: not a MirrorMaker 2 setting migrate knows; dropped, check it.
	Unknown NoteKind = "unknown"
	// OtherFlow: belongs to a flow or cluster that is not the one migrated.
	OtherFlow NoteKind = "not this flow"
)

// Note is what became of one setting that was not mapped exactly.
type Note struct {
	Setting string
	Value   string
	Kind    NoteKind
	Text    string
}

func (n Note) String() string {
	s := n.Setting
	if n.Value != "" {
		s += " = " + n.Value
	}
	return s + ": " + string(n.Kind) + ": " + n.Text
}

// Options chooses what Map writes.
type Options struct {
	// Flow is the replication flow migrated, "<source>-><target>"; empty means the only enabled one.
	Flow string
	// GroupID is kmirror's consumer group on the source; empty means "kmirror-<source>-<target>".
	GroupID string
}

// Result is a MirrorMaker 2 flow mapped onto kmirror's configuration.
type Result struct {
	Source, Target string // the flow's cluster aliases
	// Entries are the kmirror settings written, in order, each with the MirrorMaker 2 setting it
	// came from.
	Entries []Entry
	// Notes say, one per setting, what has no equivalent or was approximated.
	Notes []Note
	// OffsetsTopic is where MirrorMaker 2 keeps its source offsets, on the target cluster.
	OffsetsTopic string
	// GroupID is kmirror's consumer group on the source.
	GroupID string
}

// Entry is one kmirror setting written.
type Entry struct {
	Key   string // the dotted key, e.g. topics.include
	Value any    // string, bool, int or []string
	From  string // the MirrorMaker 2 setting(s) it came from
}

// MM2's defaults where they differ from kmirror's or decide a mapping (MirrorMaker 2 4.x).
const (
	mm2TopicsExclude  = `.*[\-\.]internal, .*\.replica, __.*`
	mm2GroupsExclude  = `console-consumer-.*, connect-.*, __.*`
	defaultPolicy     = "org.apache.kafka.connect.mirror.DefaultReplicationPolicy"
	identityPolicy    = "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"
	mm2ReplicationFac = "2"
)

// flowKey splits "a->b.key" into its flow and key.
var flowKey = regexp.MustCompile(`^([^.>-][^>]*?)->([^.]+)\.(.+)$`)

// mapper maps one flow; every setting it reads is marked used, and what is left unused at the end
// is reported, so that nothing is dropped silently.
type mapper struct {
	in      *Input
	s, t    string
	aliases []string
	used    map[string]bool
	res     *Result
	err     []string
}

// Map maps the flow opts.Flow of a MirrorMaker 2 configuration onto kmirror's settings.
func Map(in *Input, opts Options) (*Result, error) {
	aliases := list(in.Props["clusters"])
	if len(aliases) < 2 {
		return nil, fmt.Errorf("%s: clusters = %q: MirrorMaker 2 needs two cluster aliases or more", in.Name, in.Props["clusters"])
	}
	s, t, err := chooseFlow(in, aliases, opts.Flow)
	if err != nil {
		return nil, err
	}
	m := &mapper{in: in, s: s, t: t, aliases: aliases, used: map[string]bool{"clusters": true},
		res: &Result{Source: s, Target: t, GroupID: opts.GroupID}}
	if m.res.GroupID == "" {
		m.res.GroupID = "kmirror-" + s + "-" + t
	}
	m.used[s+"->"+t+".enabled"] = true
	m.clusters()
	m.topics()
	m.groups()
	m.heartbeats()
	m.consumer()
	m.producer()
	m.noEquivalents()
	m.leftovers()
	if len(m.err) > 0 {
		return nil, fmt.Errorf("%s: %s", in.Name, strings.Join(m.err, "; "))
	}
	m.res.Notes = append(append([]Note{}, in.Notes...), m.res.Notes...)
	m.res.OffsetsTopic = in.OffsetsTopic
	if m.res.OffsetsTopic == "" {
		m.res.OffsetsTopic = "mm2-offsets." + s + ".internal"
	}
	return m.res, nil
}

// chooseFlow returns the flow to migrate: the one asked for, or the only one enabled.
func chooseFlow(in *Input, aliases []string, want string) (string, string, error) {
	var enabled []string
	for _, a := range aliases {
		for _, b := range aliases {
			if a != b && strings.EqualFold(in.Props[a+"->"+b+".enabled"], "true") {
				enabled = append(enabled, a+"->"+b)
			}
		}
	}
	if want != "" {
		s, t, ok := strings.Cut(want, "->")
		if !ok || !slices.Contains(aliases, s) || !slices.Contains(aliases, t) || s == t {
			return "", "", fmt.Errorf("--flow %q: want <source>-><target> with two of the aliases in clusters (%s)", want, strings.Join(aliases, ", "))
		}
		if !slices.Contains(enabled, want) {
			return "", "", fmt.Errorf("--flow %q: %s has %s.enabled = false (enabled: %s)", want, in.Name, want, orNone(enabled))
		}
		return s, t, nil
	}
	switch len(enabled) {
	case 0:
		return "", "", fmt.Errorf("%s: no flow is enabled (set e.g. %s->%s.enabled = true)", in.Name, aliases[0], aliases[1])
	case 1:
		s, t, _ := strings.Cut(enabled[0], "->")
		return s, t, nil
	}
	return "", "", fmt.Errorf("%s: %d flows are enabled (%s): one kmirror mirrors one flow; choose it with --flow, and run migrate once per flow",
		in.Name, len(enabled), strings.Join(enabled, ", "))
}

func orNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

// get returns the flow's value of key: "<s>-><t>.key", else the top-level key.
func (m *mapper) get(key string) (string, string, bool) {
	for _, k := range []string{m.s + "->" + m.t + "." + key, key} {
		if v, ok := m.in.Props[k]; ok {
			m.used[k] = true
			return v, k, true
		}
	}
	return "", "", false
}

// cluster returns a cluster's value of key: "<alias>.key", else the top-level key (MirrorMaker 2
// lets clusters inherit top-level client settings).
func (m *mapper) cluster(alias, key string) (string, string, bool) {
	for _, k := range []string{alias + "." + key, key} {
		if v, ok := m.in.Props[k]; ok {
			m.used[k] = true
			return v, k, true
		}
	}
	return "", "", false
}

func (m *mapper) set(key string, value any, from string) {
	for i := range m.res.Entries {
		if m.res.Entries[i].Key == key {
			m.res.Entries[i] = Entry{key, value, from}
			return
		}
	}
	m.res.Entries = append(m.res.Entries, Entry{key, value, from})
}

func (m *mapper) note(setting, value string, kind NoteKind, text string) {
	if o, ok := m.in.Origin[setting]; ok {
		setting = o
	}
	if secret(setting) {
		value = "(secret)"
	}
	m.res.Notes = append(m.res.Notes, Note{Setting: setting, Value: value, Kind: kind, Text: text})
}

func (m *mapper) fail(format string, args ...any) {
	m.err = append(m.err, fmt.Sprintf(format, args...))
}

func secret(key string) bool {
	return strings.Contains(key, "password") || strings.HasSuffix(key, "jaas.config")
}

// from names a setting for an entry's comment: the resource field it came from, if any.
func (m *mapper) from(key string) string {
	if o, ok := m.in.Origin[key]; ok {
		return o
	}
	return key
}

func (m *mapper) topics() {
	policy, pk, ok := m.get("replication.policy.class")
	switch {
	case !ok || policy == defaultPolicy || policy == "DefaultReplicationPolicy":
		m.set("topics.replication_policy", "prefix", orDefault(ok, m.from(pk), "replication.policy.class (MirrorMaker 2's default, DefaultReplicationPolicy)"))
	case policy == identityPolicy || policy == "IdentityReplicationPolicy":
		m.set("topics.replication_policy", "identity", m.from(pk))
	default:
		m.fail("%s = %s: kmirror names target topics with identity (IdentityReplicationPolicy) or prefix (DefaultReplicationPolicy) only; "+
			"a custom policy's names cannot be carried over", m.from(pk), policy)
	}
	if sep, k, ok := m.get("replication.policy.separator"); ok && sep != "." {
		m.fail("%s = %q: kmirror's prefix policy joins with \".\" (\"<source>.<topic>\"); the copies already on the target would not be continued", m.from(k), sep)
	}
	if v, k, ok := m.get("topics"); ok {
		m.regexps("topics.include", list(v), m.from(k))
	} else {
		m.set("topics.include", []string{".*"}, "topics (MirrorMaker 2's default)")
	}
	ex, k, ok := m.get("topics.exclude")
	if !ok {
		if ex, k, ok = m.get("topics.blacklist"); !ok {
			ex, k = mm2TopicsExclude, "topics.exclude (MirrorMaker 2's default)"
		}
	}
	// kmirror never mirrors "__" topics: MirrorMaker 2's __.* exclusion is built in.
	m.regexps("topics.exclude", without(list(ex), "__.*"), m.from(k))
	if v, k, ok := m.get("topic.filter.class"); ok && !strings.HasSuffix(v, "DefaultTopicFilter") {
		m.note(k, v, NoEquivalent, "kmirror selects topics with topics.include/exclude only")
	}

	rf, k, ok := m.get("replication.factor")
	if !ok {
		rf, k = mm2ReplicationFac, "replication.factor (MirrorMaker 2's default)"
	}
	if n, err := strconv.Atoi(rf); err != nil || n < -1 || n == 0 {
		m.fail("%s = %q: want a number of replicas", m.from(k), rf)
	} else if n == -1 {
		m.note(k, rf, Approximated, "kmirror has no \"broker default\": topics.replication_factor stays 3, capped at the target's broker count")
	} else {
		m.set("topics.replication_factor", n, m.from(k))
	}

	refresh, refreshKey := time.Duration(0), ""
	if v, k, ok := m.get("refresh.topics.interval.seconds"); ok {
		refresh, refreshKey = m.seconds(k, v), m.from(k)
	}
	if v, k, ok := m.get("refresh.topics.enabled"); ok && v == "false" {
		m.note(k, v, Approximated, "kmirror always looks for new topics and partitions, every topics.refresh_interval")
	}
	if v, k, ok := m.get("sync.topic.configs.interval.seconds"); ok {
		d := m.seconds(k, v)
		if refresh == 0 || d < refresh {
			if refresh != 0 {
				m.note(k, v, Approximated, fmt.Sprintf("kmirror has one interval for new topics and config sync: topics.refresh_interval is the shorter, %s", d))
			}
			refresh, refreshKey = d, m.from(k)
		} else {
			m.note(k, v, Approximated, fmt.Sprintf("kmirror has one interval for new topics and config sync: topics.refresh_interval is the shorter, %s", refresh))
		}
	}
	if refresh > 0 {
		m.set("topics.refresh_interval", dur(refresh), refreshKey)
	}
	if v, k, ok := m.get("sync.topic.acls.interval.seconds"); ok {
		m.note(k, v, Approximated, "kmirror syncs ACLs every topics.refresh_interval")
	}
	syncConfigs := true
	if v, k, ok := m.get("sync.topic.configs.enabled"); ok {
		syncConfigs = m.boolean(k, v)
		if !syncConfigs {
			m.note(k, v, Approximated, "kmirror still copies topics.sync_configs when it creates a target topic; existing target topics are never altered")
		}
		m.set("topics.sync_existing_configs", syncConfigs, m.from(k))
	}
	for _, key := range []string{"config.properties.exclude", "config.properties.blacklist"} {
		if v, k, ok := m.get(key); ok {
			m.note(k, v, Approximated, "kmirror copies only the configs listed in topics.sync_configs (an allow-list; see configs/kmirror.yaml)")
		}
	}
	if v, k, ok := m.get("config.property.filter.class"); ok && !strings.HasSuffix(v, "DefaultConfigPropertyFilter") {
		m.note(k, v, NoEquivalent, "kmirror copies the configs listed in topics.sync_configs only")
	}
	acls, k, ok := m.get("sync.topic.acls.enabled")
	if !ok {
		acls, k = "true", "sync.topic.acls.enabled (MirrorMaker 2's default)"
	}
	if m.boolean(k, acls) {
		m.note(k, acls, Approximated, "kmirror copies the LITERAL ALLOW ACLs for READ and DESCRIBE of the mirrored topics (ALL as READ); "+
			"MirrorMaker 2 also copied DENY ACLs and other operations (all but ALLOW WRITE)")
	}
	m.set("topics.sync_acls", m.boolean(k, acls), m.from(k))
}

// regexps sets a list of Java regular expressions after checking Go's RE2 accepts each.
func (m *mapper) regexps(key string, res []string, from string) {
	for _, re := range res {
		if _, err := regexp.Compile(re); err != nil {
			m.fail("%s: %q is not a regular expression kmirror (Go RE2) accepts: %v; rewrite it without look-around or back-references", from, re, err)
		}
	}
	if res == nil {
		res = []string{}
	}
	m.set(key, res, from)
}

func (m *mapper) groups() {
	sync, sk, ok := m.get("sync.group.offsets.enabled")
	if !ok {
		sync, sk = "false", "sync.group.offsets.enabled (MirrorMaker 2's default)"
	}
	checkpoints, ck, ok := m.get("emit.checkpoints.enabled")
	if !ok {
		checkpoints, ck = "true", "emit.checkpoints.enabled (MirrorMaker 2's default)"
	}
	if m.boolean(ck, checkpoints) {
		m.note(ck, checkpoints, Approximated, "kmirror writes no checkpoints topic: it keeps an exact offset map (offset_map) on the target; "+
			"`kmirror offsets translate` and `kmirror failover` translate a group's position with it, and groups.include syncs groups continuously")
	}
	if v, k, ok := m.get("emit.checkpoints.interval.seconds"); ok {
		m.note(k, v, NoEquivalent, "kmirror writes no checkpoints (see emit.checkpoints.enabled)")
	}
	var groupsKey, exKey string
	groups, gk, ok := m.get("groups")
	if !ok {
		groups, gk = ".*", "groups (MirrorMaker 2's default)"
	}
	groupsKey = m.from(gk)
	ex, ek, ok := m.get("groups.exclude")
	if !ok {
		if ex, ek, ok = m.get("groups.blacklist"); !ok {
			ex, ek = mm2GroupsExclude, "groups.exclude (MirrorMaker 2's default)"
		}
	}
	exKey = m.from(ek)
	if !m.boolean(sk, sync) {
		// Nothing is synced, whatever groups says: kmirror's default, empty groups.include.
		m.set("groups.include", []string{}, m.from(sk))
		if _, _, set := m.get("sync.group.offsets.interval.seconds"); set {
			m.note("sync.group.offsets.interval.seconds", "", NoEquivalent, "group offsets are not synced (sync.group.offsets.enabled is false)")
		}
		return
	}
	m.regexps("groups.include", list(groups), groupsKey+", "+m.from(sk))
	m.regexps("groups.exclude", without(list(ex), "__.*"), exKey)
	if v, k, ok := m.get("sync.group.offsets.interval.seconds"); ok {
		m.set("groups.sync_interval", dur(m.seconds(k, v)), m.from(k))
	}
	if v, k, ok := m.get("group.filter.class"); ok && !strings.HasSuffix(v, "DefaultGroupFilter") {
		m.note(k, v, NoEquivalent, "kmirror selects groups with groups.include/exclude only")
	}
}

func (m *mapper) heartbeats() {
	on, k, ok := m.get("emit.heartbeats.enabled")
	if !ok {
		on, k = "true", "emit.heartbeats.enabled (MirrorMaker 2's default)"
	}
	enabled := m.boolean(k, on)
	m.set("heartbeats.enabled", enabled, m.from(k))
	if enabled {
		m.note(m.from(k), on, Approximated, fmt.Sprintf("kmirror's heartbeats go to kmirror.heartbeats.%s (written on the source and mirrored), "+
			"not to MirrorMaker 2's heartbeats topic", m.s))
	}
	if v, k, ok := m.get("emit.heartbeats.interval.seconds"); ok {
		m.set("heartbeats.interval", dur(m.seconds(k, v)), m.from(k))
	}
}

func (m *mapper) seconds(key, v string) time.Duration {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 1 {
		m.fail("%s = %q: want a whole number of seconds, 1 or more", m.from(key), v)
		return time.Second
	}
	return time.Duration(n) * time.Second
}

func (m *mapper) millis(key, v string) time.Duration {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		m.fail("%s = %q: want a whole number of milliseconds", m.from(key), v)
		return 0
	}
	return time.Duration(n) * time.Millisecond
}

func (m *mapper) boolean(key, v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true":
		return true
	case "false":
		return false
	}
	m.fail("%s = %q: want true or false", m.from(key), v)
	return false
}

// dur writes a duration the way configs/kmirror.yaml does (30s, 5m, 500ms).
func dur(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

func orDefault(ok bool, key, def string) string {
	if ok {
		return key
	}
	return def
}

func without(l []string, drop string) []string {
	out := []string{}
	for _, s := range l {
		if s != drop {
			out = append(out, s)
		}
	}
	return out
}

// leftovers reports every setting the mapping did not read: another flow's or cluster's, or one
// migrate does not know.
func (m *mapper) leftovers() {
	for _, k := range m.in.Keys {
		if m.used[k] {
			continue
		}
		v := m.in.Props[k]
		if sm := flowKey.FindStringSubmatch(k); sm != nil && slices.Contains(m.aliases, sm[1]) && slices.Contains(m.aliases, sm[2]) {
			if sm[1] != m.s || sm[2] != m.t {
				if sm[3] == "enabled" && v != "true" {
					continue // a disabled flow saying so
				}
				m.note(k, v, OtherFlow, fmt.Sprintf("flow %s->%s is not migrated (one kmirror per flow: run migrate again with --flow %s->%s)", sm[1], sm[2], sm[1], sm[2]))
				continue
			}
		}
		if alias, _, ok := strings.Cut(k, "."); ok && slices.Contains(m.aliases, alias) && alias != m.s && alias != m.t {
			m.note(k, v, OtherFlow, fmt.Sprintf("cluster %s is not part of flow %s->%s", alias, m.s, m.t))
			continue
		}
		m.note(k, v, Unknown, "not a MirrorMaker 2 setting migrate knows: not carried over; check whether it matters")
	}
}

// Package topics decides which source topics are mirrored, what they are called on the target
// (the replication policy), and creates and grows target topics to match the source.
//
// It also knows what a target topic accepts (Topic.Refusal): the configs that make a broker
// refuse a record its source topic accepted, read from the target when the topic is prepared.
//
// It must never mirror an internal topic (names starting with "__": Kafka's own and kmirror's),
// nor, under the prefix policy, a topic whose name shows it came from the target (a cycle:
// cycle.go); never shrink, delete or alter the configs of anything on the target, and never copy
// message.timestamp.type (a LogAppendTime target would overwrite every copy's timestamp).
package topics

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/kmirror/kmirror/pkg/config"
)

// InternalPrefix marks topics that are never mirrored: __consumer_offsets, __transaction_state
// and kmirror's own (which all start with __kmirror).
const InternalPrefix = "__"

// Filter selects source topics by anchored include and exclude regular expressions.
type Filter struct {
	include []*regexp.Regexp
	exclude []*regexp.Regexp
}

// NewFilter compiles the include and exclude expressions; each must match a whole topic name.
func NewFilter(include, exclude []string) (*Filter, error) {
	f := &Filter{}
	for i, re := range include {
		r, err := regexp.Compile("^(?:" + re + ")$")
		if err != nil {
			return nil, fmt.Errorf("topics.include[%d] %q: %w", i, re, err)
		}
		f.include = append(f.include, r)
	}
	for i, re := range exclude {
		r, err := regexp.Compile("^(?:" + re + ")$")
		if err != nil {
			return nil, fmt.Errorf("topics.exclude[%d] %q: %w", i, re, err)
		}
		f.exclude = append(f.exclude, r)
	}
	return f, nil
}

// Match reports whether topic is mirrored.
func (f *Filter) Match(topic string) bool {
	if IsInternal(topic) {
		return false
	}
	for _, r := range f.exclude {
		if r.MatchString(topic) {
			return false
		}
	}
	for _, r := range f.include {
		if r.MatchString(topic) {
			return true
		}
	}
	return false
}

// IsInternal reports whether topic belongs to Kafka or kmirror itself.
func IsInternal(topic string) bool { return strings.HasPrefix(topic, InternalPrefix) }

// Namer maps a source topic name onto its target name.
type Namer func(source string) string

// NewNamer returns the replication policy's naming: identity keeps the name, prefix puts
// "<sourceAlias>." in front of it.
func NewNamer(policy, sourceAlias string) (Namer, error) {
	switch policy {
	case config.PolicyIdentity:
		return func(s string) string { return s }, nil
	case config.PolicyPrefix:
		p := sourceAlias + Separator
		return func(s string) string { return p + s }, nil
	default:
		return nil, fmt.Errorf("topics.replication_policy %q: want identity or prefix", policy)
	}
}

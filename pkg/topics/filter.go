// Package topics decides which source topics are mirrored, what they are called on the target
// (the replication policy), and keeps target topics matching the source: one plan (Plan) says
// what the target lacks — topics to create, partitions to add, synced configs that differ, the
// source's read ACLs — and Refresh applies it, so `kmirror topics plan` prints exactly what the
// daemon does.
//
// It also knows what a target topic accepts (Topic.Refusal): the configs that make a broker
// refuse a record its source topic accepted, read from the target when the topic is prepared.
//
// It must never mirror an internal topic (names starting with "__": Kafka's own and kmirror's),
// nor, under the prefix policy, a topic whose name shows it came from the target (a cycle:
// cycle.go); never shrink or delete anything on the target, nor delete an ACL there; never alter
// a config that is not in topics.sync_configs or that the source leaves at its default; never
// copy message.timestamp.type (a LogAppendTime target would overwrite every copy's timestamp) or
// the other never-synced configs (neverSynced); and never copy a WRITE ACL.
package topics

import (
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"

	"github.com/kmirror/kmirror/pkg/config"
)

// InternalPrefix marks topics that are never mirrored: __consumer_offsets, __transaction_state
// and kmirror's own (which all start with __kmirror).
const InternalPrefix = "__"

// Filter selects source topics by anchored include and exclude regular expressions. The
// expressions can be replaced while the filter is in use (Set: a configuration reload); a Match
// sees either the old set or the new, never a mix.
type Filter struct {
	patterns atomic.Pointer[patterns]
	rules    []Rule
}

type patterns struct {
	include, exclude []*regexp.Regexp
}

// Rule decides about a topic before include and exclude do, when decided is true: a flow's own
// heartbeat topic is mirrored whatever topics.include says, for instance. Internal topics stay
// unmirrored whatever a rule says.
type Rule func(topic string) (mirrored, decided bool)

// Decide adds a rule, consulted before include and exclude in the order added. It is not safe to
// call while the filter is in use.
func (f *Filter) Decide(r Rule) { f.rules = append(f.rules, r) }

// NewFilter compiles the include and exclude expressions; each must match a whole topic name.
func NewFilter(include, exclude []string) (*Filter, error) {
	f := &Filter{}
	if err := f.Set(include, exclude); err != nil {
		return nil, err
	}
	return f, nil
}

// Set replaces the include and exclude expressions; on an error the filter is unchanged. The
// rules stay.
func (f *Filter) Set(include, exclude []string) error {
	p := &patterns{}
	for i, re := range include {
		r, err := regexp.Compile("^(?:" + re + ")$")
		if err != nil {
			return fmt.Errorf("topics.include[%d] %q: %w", i, re, err)
		}
		p.include = append(p.include, r)
	}
	for i, re := range exclude {
		r, err := regexp.Compile("^(?:" + re + ")$")
		if err != nil {
			return fmt.Errorf("topics.exclude[%d] %q: %w", i, re, err)
		}
		p.exclude = append(p.exclude, r)
	}
	f.patterns.Store(p)
	return nil
}

// Match reports whether topic is mirrored.
func (f *Filter) Match(topic string) bool {
	if IsInternal(topic) {
		return false
	}
	for _, rule := range f.rules {
		if mirrored, decided := rule(topic); decided {
			return mirrored
		}
	}
	p := f.patterns.Load()
	for _, r := range p.exclude {
		if r.MatchString(topic) {
			return false
		}
	}
	for _, r := range p.include {
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

package topics

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/IBM/sarama"
)

// Plan is what the syncer would do on the target, topic by topic, read from both clusters
// without changing anything. Refresh carries it out; `kmirror topics plan` prints it.
type Plan struct {
	// Topics are the mirrored topics, sorted by source name.
	Topics []TopicPlan `json:"topics"`
	// ACLProblem says why the ACLs could not be read, when ACL sync is on.
	ACLProblem string `json:"acl_problem,omitempty"`
}

// TopicPlan is what the syncer would do on the target for one mirrored topic. A plan with
// nothing to do is in sync.
type TopicPlan struct {
	Source string `json:"source"`
	Target string `json:"target"`
	// Create is set when the target topic is missing and would be created.
	Create *Creation `json:"create,omitempty"`
	// Grow is set when the target topic has fewer partitions than the source.
	Grow *Growth `json:"grow,omitempty"`
	// Configs are the synced configs whose target value differs from the source's.
	Configs []ConfigChange `json:"configs,omitempty"`
	// ACLs are the source's read ACLs the target topic lacks.
	ACLs []ACL `json:"acls,omitempty"`
	// Problem says why the target topic cannot be prepared: it is not mirrored until it can.
	Problem string `json:"problem,omitempty"`
	// ConfigProblem says why the configs could not be compared: the topic is still mirrored.
	ConfigProblem string `json:"config_problem,omitempty"`

	partitions   int32
	targetValues map[string]string // the target's effective configs, when read for the comparison
	sourceValues map[string]string // the source's effective configs that decide acceptance, when read

	// Read by Plan between deciding and describing: the source topic as listed, the target
	// topic's replication factor (existing topics) and the synced configs it should have.
	src  sarama.TopicDetail
	rf   int16
	want map[string]string
}

// InSync reports whether the plan has nothing to do.
func (p TopicPlan) InSync() bool {
	return p.Create == nil && p.Grow == nil && len(p.Configs) == 0 && len(p.ACLs) == 0 && p.Problem == ""
}

// Creation is a target topic to create.
type Creation struct {
	Partitions        int32 `json:"partitions"`
	ReplicationFactor int16 `json:"replication_factor"`
	// Requested is topics.replication_factor when it was capped at the target's broker count.
	Requested int               `json:"requested_replication_factor,omitempty"`
	Configs   map[string]string `json:"configs"`
}

// Growth is a partition count to raise.
type Growth struct {
	From int32 `json:"from"`
	To   int32 `json:"to"`
}

// ConfigChange is a synced config whose value on the target differs from the source's.
type ConfigChange struct {
	Key    string `json:"key"`
	Target string `json:"target"`
	Source string `json:"source"`
}

// String renders the change as the diff line shows it: "key: target value → source value".
func (c ConfigChange) String() string { return c.Key + ": " + c.Target + " → " + c.Source }

// Plan reads both clusters and returns what Refresh would do on the target for every selected
// source topic, changing nothing. The configs of the topics it compares are read in a few
// DescribeConfigs requests (describeAll), not one per topic: with a thousand topics, one per
// topic was a thousand round trips on one connection before anything was created.
func (s *Syncer) Plan(ctx context.Context) (Plan, error) {
	srcTopics, err := s.source.ListTopics()
	if err != nil {
		return Plan{}, fmt.Errorf("list source topics: %w", err)
	}
	tgtTopics, err := s.target.ListTopics()
	if err != nil {
		return Plan{}, fmt.Errorf("list target topics: %w", err)
	}
	var plan Plan
	var acls *aclSets
	if s.cfg.SyncACLs {
		if acls, err = s.readACLs(); err != nil {
			plan.ACLProblem = err.Error()
		}
	}
	brokers := -1
	brokerCount := func() (int, error) {
		if brokers < 0 {
			b, _, err := s.target.DescribeCluster()
			if err != nil {
				return 0, fmt.Errorf("describe target cluster: %w", err)
			}
			brokers = len(b)
		}
		return brokers, nil
	}
	for _, name := range slices.Sorted(maps.Keys(srcTopics)) {
		if !s.selected(name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return Plan{}, err
		}
		plan.Topics = append(plan.Topics, s.planTopic(name, srcTopics[name], tgtTopics, brokerCount))
	}
	s.compareConfigs(plan.Topics)
	for i := range plan.Topics {
		p := &plan.Topics[i]
		if acls != nil && p.Problem == "" {
			p.ACLs = acls.missing(p.Source, p.Target)
		}
	}
	return plan, nil
}

// planTopic decides what the target topic of one source topic needs, as far as the listings
// tell; compareConfigs completes the plans that depend on the topics' configs.
func (s *Syncer) planTopic(name string, src sarama.TopicDetail, targets map[string]sarama.TopicDetail, brokers func() (int, error)) TopicPlan {
	p := TopicPlan{Source: name, Target: s.cfg.Name(name), partitions: src.NumPartitions, src: src}
	tgt, exists := targets[p.Target]
	switch {
	case !exists && !s.cfg.Create:
		p.Problem = fmt.Sprintf("target topic %q does not exist and topics.create is false: create it with %d partitions", p.Target, src.NumPartitions)
		return p
	case !exists:
		n, err := brokers()
		if err != nil {
			p.Problem = err.Error()
			return p
		}
		c := &Creation{Partitions: src.NumPartitions, ReplicationFactor: int16(s.cfg.ReplicationFactor)}
		if n > 0 && s.cfg.ReplicationFactor > n {
			c.ReplicationFactor, c.Requested = int16(n), s.cfg.ReplicationFactor
		}
		p.Create = c
		return p
	case tgt.NumPartitions < src.NumPartitions && !s.cfg.Create:
		p.Problem = fmt.Sprintf("target topic %q has %d partitions, the source %d, and topics.create is false: add partitions to the target",
			p.Target, tgt.NumPartitions, src.NumPartitions)
		return p
	case tgt.NumPartitions < src.NumPartitions:
		p.Grow = &Growth{From: tgt.NumPartitions, To: src.NumPartitions}
	}
	p.rf = tgt.ReplicationFactor
	return p
}

// compareConfigs reads the configs the plans depend on, many topics per request: the source's
// for a topic to create (the configs it is created with) and, with sync_existing_configs, the
// source's and the target's for an existing topic (the configs to set on it).
func (s *Syncer) compareConfigs(plans []TopicPlan) {
	wanted := make(map[string][]string)
	for _, p := range plans {
		if p.Problem == "" && (p.Create != nil || s.cfg.SyncExistingConfigs) {
			wanted[p.Source] = acceptanceConfigs()
		}
	}
	if len(wanted) == 0 {
		return
	}
	source := describeAll(s.source, wanted)
	targets := make(map[string][]string)
	for i := range plans {
		p := &plans[i]
		if _, asked := wanted[p.Source]; !asked {
			continue
		}
		rf := p.rf
		if p.Create != nil {
			rf = p.Create.ReplicationFactor
		}
		want, err := s.wanted(p.Source, p.src, rf, source.values[p.Source], source.errs[p.Source])
		switch {
		case err != nil && p.Create != nil:
			p.Problem, p.Create = err.Error(), nil
			continue
		case err != nil:
			p.ConfigProblem = err.Error()
			continue
		case p.Create != nil:
			p.Create.Configs, p.sourceValues = want, source.values[p.Source]
			continue
		}
		p.sourceValues, p.want = source.values[p.Source], want
		names := slices.Concat(acceptanceConfigs(), slices.Collect(maps.Keys(want)))
		slices.Sort(names)
		targets[p.Target] = slices.Compact(names)
	}
	if len(targets) == 0 {
		return
	}
	target := describeAll(s.target, targets)
	for i := range plans {
		p := &plans[i]
		if _, asked := targets[p.Target]; !asked {
			continue
		}
		have, ok := target.values[p.Target]
		if !ok {
			p.ConfigProblem = fmt.Sprintf("describe target topic %q configs: %v", p.Target, target.errs[p.Target])
			continue
		}
		p.targetValues = have
		for _, key := range slices.Sorted(maps.Keys(p.want)) {
			cur, known := have[key]
			if !known {
				continue // a config this target does not know (an older Kafka): nothing to set
			}
			if !sameValue(key, cur, p.want[key]) {
				p.Configs = append(p.Configs, ConfigChange{Key: key, Target: cur, Source: p.want[key]})
			}
		}
	}
}

// sameValue compares two values of a topic config as the broker means them: cleanup.policy is
// a set.
func sameValue(key, a, b string) bool {
	if key != ConfigCleanupPolicy {
		return strings.TrimSpace(a) == strings.TrimSpace(b)
	}
	set := func(v string) []string {
		var out []string
		for _, p := range strings.Split(v, ",") {
			out = append(out, strings.TrimSpace(p))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(set(a), set(b))
}

package topics

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/IBM/sarama"
	"github.com/cenkalti/backoff/v5"
	"go.uber.org/zap"
)

// topicsPerDescribe is how many topics one DescribeConfigs request names. Kafka sets no bound;
// this keeps a request and its answer (a few configs per topic) small.
const topicsPerDescribe = 500

// described is what DescribeConfigs said about topics: each topic's configs (name → effective
// value), or why they could not be read.
type described struct {
	values map[string]map[string]string
	errs   map[string]error
}

// describeAll reads, for each topic of wanted, the configs it names (topic → config names),
// topicsPerDescribe topics per request. Every topic of wanted is in the answer, with its
// values or its error: a topic the broker left out of its answer has ErrIncompleteResponse.
func describeAll(a Admin, wanted map[string][]string) described {
	d := described{values: make(map[string]map[string]string, len(wanted)), errs: make(map[string]error)}
	names := slices.Sorted(maps.Keys(wanted))
	for chunk := range slices.Chunk(names, topicsPerDescribe) {
		resources := make([]*sarama.ConfigResource, 0, len(chunk))
		for _, name := range chunk {
			resources = append(resources, &sarama.ConfigResource{Type: sarama.TopicResource, Name: name, ConfigNames: wanted[name]})
		}
		results, err := a.DescribeConfigs(resources, sarama.DescribeConfigsOptions{})
		if err != nil {
			for _, name := range chunk {
				d.errs[name] = err
			}
			continue
		}
		for _, r := range results {
			if r.Type != sarama.TopicResource || wanted[r.Name] == nil {
				continue
			}
			if !errors.Is(r.ErrorCode, sarama.ErrNoError) {
				d.errs[r.Name] = &sarama.DescribeConfigError{Err: r.ErrorCode, ErrMsg: r.ErrorMsg}
				continue
			}
			values := make(map[string]string, len(r.Configs))
			for _, e := range r.Configs {
				values[e.Name] = e.Value
			}
			d.values[r.Name] = values
		}
		for _, name := range chunk {
			if _, ok := d.values[name]; !ok && d.errs[name] == nil {
				d.errs[name] = sarama.ErrIncompleteResponse
			}
		}
	}
	return d
}

// knownWithin is how long a target topic that the listing showed but a describe does not know
// yet is asked again; createdKnownWithin is the same for a topic just created. A KRaft controller
// answers CreateTopics once it has committed the topics, and the brokers learn them when they
// apply that to their metadata, creating each partition's log: that took 70 s for 10,000
// partitions created in 4 requests on a loaded 2-core machine, and 200 s for the same created one
// topic per request (benchmarks/results/scale-2026-12-06-start.md). A created topic is mirrored
// only once the target knows it: before that, every record sent to it would be refused and sent
// again.
const (
	knownWithin        = 5 * time.Second
	createdKnownWithin = 2 * time.Minute
)

// describeTargets reads what decides acceptance on target topics, many per request. A topic the
// broker that answers does not know yet (UNKNOWN_TOPIC_OR_PARTITION) is asked again, with the
// others still unknown, after a pause that starts short (in KRaft a topic usually reaches the
// brokers within tens of milliseconds), for up to within; waiting longer than knownWithin is
// logged once, with how many topics are awaited. Every topic of targets is in the answer.
func describeTargets(ctx context.Context, a Admin, targets []string, within time.Duration, log *zap.Logger) described {
	wait := backoff.NewExponentialBackOff()
	wait.InitialInterval, wait.MaxInterval = 10*time.Millisecond, 250*time.Millisecond
	start := time.Now()
	logged := false
	out := described{values: make(map[string]map[string]string, len(targets)), errs: make(map[string]error)}
	pending := targets
retry:
	for len(pending) > 0 {
		wanted := make(map[string][]string, len(pending))
		for _, name := range pending {
			wanted[name] = acceptanceConfigs()
		}
		d := describeAll(a, wanted)
		pending = pending[:0:0]
		for _, name := range slices.Sorted(maps.Keys(wanted)) {
			if v, ok := d.values[name]; ok {
				out.values[name] = v
				delete(out.errs, name)
				continue
			}
			out.errs[name] = d.errs[name]
			if errors.Is(d.errs[name], sarama.ErrUnknownTopicOrPartition) {
				pending = append(pending, name)
			}
		}
		next := wait.NextBackOff()
		if len(pending) == 0 || time.Since(start)+next > within {
			break
		}
		if log != nil && !logged && time.Since(start) > knownWithin {
			logged = true
			log.Info("waiting for the target's brokers to know the topics just created; they are mirrored once it does",
				zap.Int("topics", len(pending)), zap.Int("created", len(targets)), zap.Duration("up_to", within))
		}
		select {
		case <-ctx.Done():
			break retry
		case <-time.After(next):
		}
	}
	if logged {
		log.Info("the target knows the topics just created", zap.Int("known", len(out.values)), zap.Int("created", len(targets)),
			zap.Duration("after", time.Since(start).Round(time.Millisecond)))
	}
	for name, err := range out.errs {
		out.errs[name] = fmt.Errorf("describe target topic %q configs: %w", name, err)
	}
	return out
}

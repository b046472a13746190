package mirror

import (
	"context"
	"fmt"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/deadletter"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/worker"
)

// deadLetterMaxBytes bounds the records the dead-letter topic takes (its max.message.bytes, with
// room for kmirror's headers on top).
const deadLetterMaxBytes = 16 << 20

// deadLetters opens the dead-letter writer when producer.refused_policy is dead_letter (nil
// otherwise) and makes sure its topic exists, so a missing permission shows at start rather than
// at the first refused record.
func (m *Mirror) deadLetters(admin sarama.ClusterAdmin, stopping *stopper) (worker.DeadLetter, func(), error) {
	if m.cfg.Producer.RefusedPolicy != config.RefusedDeadLetter {
		return nil, func() {}, nil
	}
	pc, err := worker.ProducerConfig(m.target.Config("dead-letter"), m.cfg.Producer, deadLetterMaxBytes+64<<10)
	if err != nil {
		return nil, nil, err
	}
	if m.opts.SaramaClients != nil {
		m.opts.SaramaClients("dead-letter", pc)
	}
	p, err := sarama.NewSyncProducer(m.target.Bootstrap(), pc)
	if err != nil {
		return nil, nil, fmt.Errorf("open the dead-letter producer on target %s: %w", m.target.Alias(), err)
	}
	closeP := func() { stopping.do("close the dead-letter producer", p.Close) }
	w, err := deadletter.New(deadletter.Config{
		Producer: p, Admin: admin, Topic: m.cfg.DeadLetterTopicName(), SourceAlias: m.cfg.Source.Alias,
		ReplicationFactor: int16(m.cfg.Topics.ReplicationFactor), MaxMessageBytes: deadLetterMaxBytes, Log: m.log,
	})
	if err == nil {
		err = w.Ensure(context.Background())
	}
	if err != nil {
		closeP()
		return nil, nil, fmt.Errorf("dead-letter topic: %w", err)
	}
	return deadLetterWriter{w}, closeP, nil
}

// deadLetterWriter adapts the dead-letter writer to what a worker calls.
type deadLetterWriter struct{ w *deadletter.Writer }

func (d deadLetterWriter) Write(ctx context.Context, r *record.Record, reason error) error {
	return d.w.WriteRecord(ctx, r, reason)
}

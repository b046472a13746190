package mirror

import (
	"context"
	"sync"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/worker"
)

// connect opens an admin client on each cluster, the source's first, retrying while a cluster
// cannot be reached (Ready names which) until ctx ends. closeAdmins closes both, once, within
// the stop's deadline; when the target cannot be reached the source's is closed before connect
// returns.
func (m *Mirror) connect(ctx context.Context, stopping *stopper) (src, tgt sarama.ClusterAdmin, closeAdmins func(), err error) {
	m.reached[0].Store(false)
	m.reached[1].Store(false)
	if src, err = m.source.ConnectAdmin(ctx, m.log, m.opts.SaramaClients); err != nil {
		return nil, nil, nil, err
	}
	m.reached[0].Store(true)
	if tgt, err = m.target.ConnectAdmin(ctx, m.log, m.opts.SaramaClients); err != nil {
		stopping.do("close the source admin client", src.Close)
		return nil, nil, nil, err
	}
	m.reached[1].Store(true)
	return src, tgt, sync.OnceFunc(func() {
		stopping.do("close the source admin client", src.Close)
		stopping.do("close the target admin client", tgt.Close)
	}), nil
}

// stoppedBeforeStart turns a connection error into nil when the caller asked the mirror to stop
// (nothing was fetched, so there is nothing to drain or commit).
func stoppedBeforeStart(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// producerConfig is the producer configuration for the target as far away as it is
// (worker.ProducerSizing: the distant linger for a target at least consumer.distant_rtt away),
// measured on a client of its own, closed at once.
func (m *Mirror) producerConfig(ctx context.Context) config.Producer {
	p := m.cfg.Producer
	if m.cfg.Consumer.DistantRTT <= 0 || p.DistantLinger <= p.Linger {
		return p
	}
	c, err := m.target.OpenClient(ctx, m.target.Config("rtt"))
	if err != nil {
		m.log.Warn("cannot open a client to measure the round trip to the target; producing with producer.linger", zap.Error(err))
		return p
	}
	defer func() { _ = c.Close() }()
	return worker.ProducerSizing(c, p, m.cfg.Consumer.DistantRTT, m.log)
}

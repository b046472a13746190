package mirror

import (
	"context"
	"sync"

	"github.com/IBM/sarama"
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

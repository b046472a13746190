package mirror

import (
	"context"
	"errors"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/cluster"
)

// identityEvery is how often both clusters are asked for their cluster ID while kmirror runs.
const identityEvery = 2 * time.Second

// identity holds the cluster IDs both clusters reported when kmirror connected. Sarama reconnects
// to whatever answers at the configured addresses: after a cluster is replaced behind them,
// kmirror would mirror into (or from) another cluster. The IDs are checked again before every
// topic sync (which would create topics) and every identityEvery; another ID stops the mirror.
type identity struct {
	srcAdmin, tgtAdmin sarama.ClusterAdmin
	srcID, tgtID       string
}

// sameClusters returns a *cluster.SwappedError when a cluster reports another ID than at start,
// another error when an ID cannot be read, nil otherwise (or when the IDs were not known).
func (m *Mirror) sameClusters() error {
	id := m.identity
	if id == nil {
		return nil
	}
	if err := m.source.CheckID(id.srcAdmin, id.srcID); err != nil {
		return err
	}
	return m.target.CheckID(id.tgtAdmin, id.tgtID)
}

// watchIdentity checks the cluster IDs every identityEvery until ctx ends, and stops the mirror
// when one changed. An ID that cannot be read (the cluster is down) is checked again later.
func (m *Mirror) watchIdentity(ctx context.Context) {
	t := time.NewTicker(identityEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := m.sameClusters()
		if swapped := (*cluster.SwappedError)(nil); errors.As(err, &swapped) {
			m.fatal(err)
			return
		}
		if err != nil {
			m.log.Debug("cluster ID not checked", zap.Error(err))
		}
	}
}

package mirror

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/cluster"
	"github.com/kmirror/kmirror/pkg/config"
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

// distinctClusters refuses to mirror a cluster into itself: validation catches one named twice
// in the bootstrap lists, but not one reached under two names (localhost and 127.0.0.1, a DNS
// alias, a load balancer); the cluster IDs tell. A cluster that reports no ID, or an ID that
// cannot be read, is let through with a warning: the cycle rules still hold under the prefix
// policy.
func (m *Mirror) distinctClusters(src, tgt sarama.ClusterAdmin) error {
	srcID, serr := cluster.ID(src, m.source.Version())
	tgtID, terr := cluster.ID(tgt, m.target.Version())
	if err := errors.Join(serr, terr); err != nil {
		m.log.Warn("could not compare the cluster IDs of source and target; going on", zap.Error(err))
		return nil
	}
	m.identity = &identity{srcAdmin: src, tgtAdmin: tgt, srcID: srcID, tgtID: tgtID}
	if srcID != "" && srcID == tgtID {
		return fmt.Errorf("source (alias %s, bootstrap %v) and target (alias %s, bootstrap %v) are the same Kafka cluster "+
			"(cluster ID %s): kmirror would read its own copies back forever (%s); point target.bootstrap at another cluster",
			m.cfg.Source.Alias, m.cfg.Source.Bootstrap, m.cfg.Target.Alias, m.cfg.Target.Bootstrap, srcID,
			selfMirror(m.cfg.Topics.ReplicationPolicy))
	}
	return nil
}

// selfMirror says what mirroring a cluster into itself would do under policy.
func selfMirror(policy string) string {
	if policy == config.PolicyPrefix {
		return "with the prefix policy, each topic copied again a level deeper"
	}
	return "with the identity policy, every record appended to its own topic again and again"
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

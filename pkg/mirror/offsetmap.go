package mirror

import (
	"context"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/offsetmap"
	"github.com/kmirror/kmirror/pkg/offsets"
	"github.com/kmirror/kmirror/pkg/record"
	"github.com/kmirror/kmirror/pkg/source"
)

// offsetMap is the offset map as the mirror runs it: the store on the target, the index every
// member follows, and the flusher writing this member's claims.
type offsetMap struct {
	client   sarama.Client // the producer's, and the group sync's commits
	reader   sarama.Client // the map topic's reader
	producer sarama.SyncProducer
	store    *offsetmap.Store
	index    *offsetmap.Index
	flusher  *offsetmap.Flusher
	log      *zap.Logger
}

// claimFlushTimeout bounds the final write of a claim's map when it ends.
const claimFlushTimeout = 5 * time.Second

// openOffsetMap opens the map's clients on the target and makes sure its topic exists; nil when
// offset_map.enabled is off.
func (m *Mirror) openOffsetMap(ctx context.Context, admin sarama.ClusterAdmin) (*offsetMap, error) {
	if !m.cfg.OffsetMap.Enabled {
		return nil, nil
	}
	cfg := m.target.Config("offset-map")
	cfg.Producer.Return.Successes = true
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Net.MaxOpenRequests = 1
	cfg.Consumer.Return.Errors = true
	// A write of the map happens before each commit and when a claim ends: against a target that
	// does not answer it gives up within seconds rather than hold those up.
	cfg.Net.ReadTimeout = min(cfg.Net.ReadTimeout, 10*time.Second)
	cfg.Net.WriteTimeout = min(cfg.Net.WriteTimeout, 10*time.Second)
	cfg.Producer.Retry.Max = 2
	if m.opts.SaramaClients != nil {
		m.opts.SaramaClients("offset-map", cfg)
	}
	client, err := m.target.OpenClient(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("offset map: connect to target %s: %w", m.target.Alias(), err)
	}
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("offset map: open a producer on target %s: %w", m.target.Alias(), err)
	}
	// The map is read on a client of its own: a broker answers one request per connection at a
	// time, and the reader's fetches wait for new records, which would hold each write (and so
	// each commit of source offsets) behind them.
	rcfg := m.target.Config("offset-map-reader")
	rcfg.Consumer.Return.Errors = true
	if m.opts.SaramaClients != nil {
		m.opts.SaramaClients("offset-map-reader", rcfg)
	}
	reader, err := m.target.OpenClient(ctx, rcfg)
	if err != nil {
		_ = producer.Close()
		_ = client.Close()
		return nil, fmt.Errorf("offset map: connect a reader to target %s: %w", m.target.Alias(), err)
	}
	om := &offsetMap{client: client, reader: reader, producer: producer, index: offsetmap.NewIndex(), log: m.log}
	om.store, err = offsetmap.NewStore(offsetmap.StoreConfig{
		Topic: m.cfg.OffsetMapTopic(), Admin: admin, Client: reader, Producer: producer,
		ReplicationFactor: int16(m.cfg.Topics.ReplicationFactor), Log: m.log,
	})
	if err == nil {
		err = om.store.Ensure()
	}
	if err != nil {
		om.close()
		return nil, err
	}
	// A write of the map precedes each commit of source offsets: it gets at most one commit
	// interval, so that a map partition whose leader does not answer delays a commit by that
	// much at most (the commit then goes on; the map catches up at the next write).
	//
	// Under exactly-once the map is written before each transaction commits, and a write that
	// fails aborts the transaction (and stops the mirror): a write gets the map's default bound
	// there, seconds, not a commit interval, which a first write (the producer's id, the topic's
	// metadata) can outlast on a busy target.
	writeTimeout := m.cfg.Commit.Interval
	if m.cfg.Delivery.Mode == config.ExactlyOnce {
		writeTimeout = max(writeTimeout, offsetmap.DefaultWriteTimeout)
	}
	fc := offsetmap.FlusherConfig{Store: om.store, Interval: m.cfg.OffsetMap.FlushInterval, Index: om.index,
		WriteTimeout: writeTimeout}
	if mt := m.opts.Metrics; mt != nil {
		fc.Written = func(n int) { mt.OffsetMapChunks.Add(float64(n)) }
		fc.Failed = func(error) { mt.OffsetMapWriteErrors.Inc() }
	}
	om.flusher = offsetmap.NewFlusher(fc)
	return om, nil
}

// copies is the source handler's hook: a recorder for each claim, flushed with the others and
// once more when the claim has drained, so that the next owner of the partition finds it all.
func (om *offsetMap) copies(topic string, partition int32, topicID string, start int64, track *offsets.Partition) (record.Copies, func()) {
	rec := offsetmap.NewRecorder(topic, partition, topicID, start)
	rec.Track(track) // a gap in the acknowledged offsets is "no record" only once it is settled
	om.flusher.Add(rec)
	return rec, func() {
		ctx, cancel := context.WithTimeout(context.Background(), claimFlushTimeout)
		defer cancel()
		if err := om.flusher.Done(ctx, rec); err != nil {
			om.log.Warn("the offset map of a partition that ends here was not written; group offsets past its last write are not translated until it is mirrored again",
				zap.String("topic", topic), zap.Int32("partition", partition), zap.Error(err))
		}
	}
}

// write is the exactly-once workers' WriteMap: it writes the recorders of the claims whose
// records a transaction holds before the transaction commits their positions.
func (om *offsetMap) write(ctx context.Context, cs []record.Copies) error {
	rs := make([]*offsetmap.Recorder, 0, len(cs))
	for _, c := range cs {
		if r, ok := c.(*offsetmap.Recorder); ok {
			rs = append(rs, r)
		}
	}
	return om.flusher.Write(ctx, rs...)
}

// run follows the map topic into the index and flushes the claims' recorders until ctx ends.
func (om *offsetMap) run(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		om.store.FollowAlways(ctx, om.index, func() {
			om.log.Info("offset map read", zap.String("topic", om.store.Topic()), zap.Int("chunks", om.index.Len()))
		})
	}()
	om.flusher.Run(ctx)
	<-done
}

// pruneEvery is how often the chunks no translation needs any more are deleted.
const pruneEvery = 5 * time.Minute

func (m *Mirror) pruneEvery() time.Duration {
	if d := m.opts.OffsetMapPruneEvery; d > 0 {
		return d
	}
	return pruneEvery
}

// prune deletes, every interval until ctx ends, the chunks of this member's partitions that no
// translation needs (Index.Expired): those that cover only records deleted from the source
// (retention), and those every offset of which later chunks cover (copies made again by a
// restart), so that the map stays as long as the source's retention.
func (om *offsetMap) prune(ctx context.Context, every time.Duration, claims func() map[string][]int32, src source.Cluster) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		owned := claims()
		if len(owned) == 0 {
			continue
		}
		bounds, err := src.Bounds(owned)
		if err != nil {
			om.log.Debug("offset map not pruned: the source's log starts could not be listed", zap.Error(err))
			continue
		}
		var expired []*offsetmap.Chunk
		for tp, b := range bounds {
			expired = append(expired, om.index.Expired(tp.Topic, tp.Partition, b.Start)...)
		}
		dctx, cancel := context.WithTimeout(ctx, offsetmap.DefaultWriteTimeout)
		err = om.store.Delete(dctx, expired)
		cancel()
		if err != nil {
			om.log.Warn("expired chunks of the offset map not deleted; trying again later", zap.Error(err))
			continue
		}
		for _, c := range expired {
			om.index.Delete(c.Topic, c.Partition, c.Target)
		}
		if len(expired) > 0 {
			om.log.Info("deleted offset-map chunks no translation needs (records the source no longer holds, or copied again since)", zap.Int("chunks", len(expired)))
		}
	}
}

// producerCloseWait bounds how long closing the map's producer waits for a write the target has
// not answered before the clients are closed under it (which ends that write).
const producerCloseWait = time.Second

func (om *offsetMap) close() {
	closed := make(chan struct{})
	go func() { _ = om.producer.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(producerCloseWait):
		om.log.Warn("closing the offset-map producer with a write the target did not answer; closing its connections")
	}
	_ = om.reader.Close()
	_ = om.client.Close()
}

// sourceCommitter is the handler's NewCommitter under at-least-once: it commits the source
// group's offsets through src, a client of their own (so that each commit's outcome is known),
// and writes the offset map om first when there is one (mapFirst).
func sourceCommitter(src sarama.Client, group string, cfg *sarama.Config, om *offsetMap) func(sarama.ConsumerGroupSession, func(string) string) offsets.Committer {
	coordinator := offsets.ClientCoordinator{Client: src, Group: group}
	return func(sess sarama.ConsumerGroupSession, metadata func(string) string) offsets.Committer {
		c := offsets.NewGroupCommitter(sess, coordinator, group, cfg, metadata)
		if om != nil {
			return mapFirst{c, om.flusher}
		}
		return c
	}
}

// mapFirst writes the offset map before each commit of source offsets: everything marked was
// recorded before it was acknowledged, so once written, the map covers every committed position
// and a claim starting there continues it without a hole. A failed write does not hold the commit
// back (the mirror's progress matters more); the map then has a hole, which translations report
// as unknown, never as a guess.
type mapFirst struct {
	offsets.Committer
	flusher *offsetmap.Flusher
}

func (c mapFirst) Commit(ctx context.Context) error {
	_ = c.flusher.Flush(ctx) // bounded by the flusher's WriteTimeout; logged and counted by the flusher
	return c.Committer.Commit(ctx)
}

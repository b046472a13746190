package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// OpenClient opens a client of the cluster with cfg, giving up when ctx ends (see OpenAdmin).
func (c *Cluster) OpenClient(ctx context.Context, cfg *sarama.Config) (sarama.Client, error) {
	return open(ctx, func() (sarama.Client, error) { return sarama.NewClient(c.Bootstrap(), cfg) })
}

// OpenAdmin opens an admin client of the cluster with cfg, giving up when ctx ends: sarama dials
// and retries metadata for up to a minute against brokers that do not answer, and a stop must not
// wait for that (an admin that connects after all is closed at once).
func (c *Cluster) OpenAdmin(ctx context.Context, cfg *sarama.Config) (sarama.ClusterAdmin, error) {
	return open(ctx, func() (sarama.ClusterAdmin, error) { return sarama.NewClusterAdmin(c.Bootstrap(), cfg) })
}

// open runs dial on a goroutine of its own and returns what it returns, or the cause of ctx's end
// as soon as ctx ends; what dial opens after that is closed once it returns.
func open[T interface{ Close() error }](ctx context.Context, dial func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := dial()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.err == nil {
				_ = r.v.Close()
			}
		}()
		var zero T
		return zero, context.Cause(ctx)
	}
}

// ConnectAdmin opens an admin client of the cluster, retrying with backoff (1 s doubling to 30 s)
// while the cluster is unreachable, until ctx ends. seen, when set, is told of each admin's
// configuration as it is built ("source-admin" or "target-admin"), so its go-metrics registry can
// be exported.
func (c *Cluster) ConnectAdmin(ctx context.Context, log *zap.Logger, seen func(string, *sarama.Config)) (sarama.ClusterAdmin, error) {
	backoff := time.Second
	for {
		cfg := c.Config("admin")
		if seen != nil {
			seen(c.key+"-admin", cfg)
		}
		a, err := c.OpenAdmin(ctx, cfg)
		if err == nil {
			return a, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to %s cluster %s %v: %w", c.key, c.Alias(), c.Bootstrap(), context.Cause(ctx))
		}
		log.Warn("cannot reach cluster; retrying", zap.String("cluster", c.key), zap.String("alias", c.Alias()),
			zap.Strings("bootstrap", c.Bootstrap()), zap.Error(err), zap.String("hint", c.Hint()), zap.Duration("in", backoff))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to %s cluster %s %v: %w", c.key, c.Alias(), c.Bootstrap(), context.Cause(ctx))
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

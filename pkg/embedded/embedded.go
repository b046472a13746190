// Package embedded starts in-process Kafka clusters (franz-go's kfake) on loopback, for the demo
// and the hermetic tests. They speak the Kafka protocol; nothing in kmirror knows they are fake.
//
// It must never listen beyond loopback.
package embedded

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Cluster is a running in-process Kafka cluster.
type Cluster struct {
	// Name is the cluster's alias (europe, us …).
	Name string
	kc   *kfake.Cluster
}

// Start starts a cluster of brokers nodes listening on 127.0.0.1, on free ports. Extra kfake
// options (TLS, SASL, seeded topics) may be passed.
func Start(name string, brokers int, opts ...kfake.Opt) (*Cluster, error) {
	all := append([]kfake.Opt{
		kfake.NumBrokers(brokers),
		kfake.ClusterID("kmirror-" + name),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, "127.0.0.1:0")
		}),
	}, opts...)
	kc, err := kfake.NewCluster(all...)
	if err != nil {
		return nil, fmt.Errorf("start embedded cluster %s: %w", name, err)
	}
	return &Cluster{Name: name, kc: kc}, nil
}

// Addrs returns the brokers' host:port addresses.
func (c *Cluster) Addrs() []string { return c.kc.ListenAddrs() }

// Fake exposes the underlying kfake cluster, for tests that inject faults.
func (c *Cluster) Fake() *kfake.Cluster { return c.kc }

// Close stops every broker.
func (c *Cluster) Close() { c.kc.Close() }

// CaptureBatches records every record batch kc is sent in produce requests, and still lets kc
// handle each request; the function it returns gives the batches, whole, in the order they came.
// Tests use it to see what a producer put on the wire.
func CaptureBatches(kc *kfake.Cluster) func() [][]byte {
	var mu sync.Mutex
	var got [][]byte
	kc.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		for _, tp := range req.(*kmsg.ProduceRequest).Topics {
			for _, p := range tp.Partitions {
				got = append(got, bytes.Clone(p.Records))
			}
		}
		return nil, nil, false
	})
	return func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

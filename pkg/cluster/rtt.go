package cluster

import (
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// RoundTrip measures the round trip to a cluster: the fastest of tries ApiVersions requests to
// one of its brokers, a request a broker answers from memory, so what it measures is the path
// (network, TLS) and not the broker's load. tries below 1 counts as 1.
func RoundTrip(c sarama.Client, tries int) (time.Duration, error) {
	b := c.LeastLoadedBroker()
	if b == nil {
		return 0, errors.New("measure the round trip: no broker known")
	}
	if err := b.Open(c.Config()); err != nil && !errors.Is(err, sarama.ErrAlreadyConnected) {
		return 0, fmt.Errorf("measure the round trip to broker %s: %w", b.Addr(), err)
	}
	if _, err := b.Connected(); err != nil {
		return 0, fmt.Errorf("measure the round trip to broker %s: %w", b.Addr(), err)
	}
	best := time.Duration(0)
	for i := 0; i < max(tries, 1); i++ {
		start := time.Now()
		if _, err := b.ApiVersions(&sarama.ApiVersionsRequest{}); err != nil {
			return 0, fmt.Errorf("measure the round trip to broker %s: %w", b.Addr(), err)
		}
		if took := time.Since(start); i == 0 || took < best {
			best = took
		}
	}
	return best, nil
}

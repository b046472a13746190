package cluster

import (
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// TestRoundTripMeasuresThePath: against a broker 30 ms away the round trip is at least 30 ms;
// against one on loopback it is well under kmirror's distant_rtt (10 ms).
func TestRoundTripMeasuresThePath(t *testing.T) {
	for _, tc := range []struct {
		name     string
		latency  time.Duration
		min, max time.Duration
	}{
		{"loopback", 0, 0, 10 * time.Millisecond},
		{"30 ms away", 30 * time.Millisecond, 30 * time.Millisecond, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mb := sarama.NewMockBroker(t, 1)
			defer mb.Close()
			mb.SetHandlerByMap(map[string]sarama.MockResponse{
				"MetadataRequest":    sarama.NewMockMetadataResponse(t).SetBroker(mb.Addr(), mb.BrokerID()),
				"ApiVersionsRequest": sarama.NewMockApiVersionsResponse(t),
			})
			cfg := sarama.NewConfig()
			cfg.Version = sarama.V1_0_0_0
			cfg.ApiVersionsRequest = false // the mock answers ApiVersions for RoundTrip only
			client, err := sarama.NewClient([]string{mb.Addr()}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			mb.SetLatency(tc.latency)
			rtt, err := RoundTrip(client, 3)
			if err != nil {
				t.Fatal(err)
			}
			if rtt < tc.min || rtt >= tc.max {
				t.Errorf("RoundTrip = %s, want in [%s, %s)", rtt, tc.min, tc.max)
			}
		})
	}
}

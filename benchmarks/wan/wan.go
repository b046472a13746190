// Package wan puts a wide-area round trip between a Kafka client and a remote cluster on one
// machine, for the benchmarks: a kernel without netem cannot delay loopback traffic, so each
// remote broker is reached through a toxiproxy TCP proxy (github.com/Shopify/toxiproxy/v2, the
// proxy sarama's functional tests use) whose latency toxics hold every byte for half the round
// trip in each direction. The broker advertises the proxy's address on the listener the proxy
// forwards to (scripts/kafka/cluster.sh up --remote-listener), so a client that bootstraps
// through the proxy keeps talking through it after the metadata response.
//
// Invariant: at round-trip time r every byte a client sends is held r/2 before the broker gets
// it, and every byte of the reply r/2 (the odd millisecond on the way back) before the client
// gets it, so a request and its response take at least r; bytes are neither dropped nor
// reordered. At r = 0 the traffic still passes through the proxy, so the proxy's own cost is
// part of any baseline taken at 0. What the proxy does not model is a real path's TCP window:
// it reads from the client as fast as it can (up to 1,024 chunks per connection and direction
// are held in the toxic), so a long fat path's window limit does not show.
package wan

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Route is one remote broker: the proxy listens on Listen (the address the broker advertises to
// remote clients) and forwards to Upstream (the broker's own listener).
type Route struct {
	Listen, Upstream string
}

// ParseRoutes reads the routes `scripts/kafka/cluster.sh remote NAME` prints: one line per broker,
// the proxy's address and the broker's remote listener.
func ParseRoutes(out string) ([]Route, error) {
	var routes []Route
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("wan: route line %q: want PROXY_ADDR UPSTREAM_ADDR", line)
		}
		routes = append(routes, Route{Listen: f[0], Upstream: f[1]})
	}
	return routes, nil
}

// Link is the proxies of one remote cluster, all at the same round-trip time.
type Link struct {
	mu      sync.Mutex
	proxies []*toxiproxy.Proxy
	rtt     time.Duration
}

// Open starts a proxy for each route, with no delay yet (SetRTT sets it).
func Open(routes []Route) (*Link, error) {
	if len(routes) == 0 {
		return nil, fmt.Errorf("wan: no route to proxy")
	}
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	l := &Link{}
	for i, r := range routes {
		p := toxiproxy.NewProxy(server, fmt.Sprintf("remote-%d", i+1), r.Listen, r.Upstream)
		if err := p.Start(); err != nil {
			l.Close()
			return nil, fmt.Errorf("wan: start proxy %s → %s: %w", r.Listen, r.Upstream, err)
		}
		l.proxies = append(l.proxies, p)
	}
	return l, nil
}

// Addrs are the addresses the proxies listen on, in the order of the routes: the remote
// cluster's bootstrap servers for a client behind the WAN.
func (l *Link) Addrs() []string {
	var a []string
	for _, p := range l.proxies {
		a = append(a, p.Listen)
	}
	return a
}

// RTT is the round-trip time the proxies add now.
func (l *Link) RTT() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rtt
}

// SetRTT makes every proxy add round-trip time rtt (whole milliseconds, the toxic's unit):
// rtt/2 on the way to the broker, the rest on the way back. Connections already open get it too.
func (l *Link) SetRTT(rtt time.Duration) error {
	if rtt < 0 || rtt%time.Millisecond != 0 {
		return fmt.Errorf("wan: round-trip time %s: want whole milliseconds, 0 or more", rtt)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	up, down := halves(rtt)
	for _, p := range l.proxies {
		p.Toxics.ResetToxics(context.Background())
		for _, t := range []struct {
			stream string
			delay  time.Duration
		}{{"upstream", up}, {"downstream", down}} {
			if t.delay == 0 {
				continue
			}
			js := fmt.Sprintf(`{"name":"rtt-%s","type":"latency","stream":%q,"toxicity":1,"attributes":{"latency":%d}}`,
				t.stream, t.stream, t.delay.Milliseconds())
			if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
				return fmt.Errorf("wan: %s latency of %s on proxy %s: %w", t.stream, t.delay, p.Listen, err)
			}
		}
	}
	l.rtt = rtt
	return nil
}

// halves splits a round trip into the delay towards the broker and the delay back, whole
// milliseconds each, the odd one on the way back.
func halves(rtt time.Duration) (up, down time.Duration) {
	ms := rtt.Milliseconds()
	return time.Duration(ms/2) * time.Millisecond, time.Duration(ms-ms/2) * time.Millisecond
}

// Stall cuts the link the way a path that drops every packet does: connections stay open and
// new ones are accepted, but no byte passes in either direction until Mend. The bytes sent
// meanwhile are held, not dropped (as TCP would resend them), and delivered in order at Mend
// (a client that gave up on a request meanwhile may still see its broker act on it then).
func (l *Link) Stall() error { return l.stall("upstream", "downstream") }

// StallReplies stalls the way back only, until Mend: the brokers get every request and act on
// it, and the clients get no answer (a produce the broker wrote whose response is lost).
func (l *Link) StallReplies() error { return l.stall("downstream") }

func (l *Link) stall(streams ...string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.proxies {
		for _, stream := range streams {
			// A latency far longer than any cut holds every byte until the toxic is removed,
			// which flushes what it holds (toxiproxy removes a toxic without dropping data).
			js := fmt.Sprintf(`{"name":"stall-%s","type":"latency","stream":%q,"toxicity":1,"attributes":{"latency":%d}}`,
				stream, stream, time.Hour.Milliseconds())
			if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
				return fmt.Errorf("wan: stall %s on proxy %s: %w", stream, p.Listen, err)
			}
		}
	}
	return nil
}

// Break cuts the link the way a reset path does: every open connection is closed and new ones
// are refused until Mend.
func (l *Link) Break() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.proxies {
		p.Stop()
	}
}

// Mend ends a Stall (delivering what it held) or a Break (listening again on the same
// addresses); the round-trip time set by SetRTT stays.
func (l *Link) Mend() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, p := range l.proxies {
		for _, stream := range []string{"upstream", "downstream"} {
			if p.Toxics.GetToxic("stall-"+stream) != nil {
				if err := p.Toxics.RemoveToxic(context.Background(), "stall-"+stream); err != nil {
					errs = append(errs, fmt.Errorf("wan: end the stall of %s on proxy %s: %w", stream, p.Listen, err))
				}
			}
		}
		if err := p.Start(); err != nil && !errors.Is(err, toxiproxy.ErrProxyAlreadyStarted) {
			errs = append(errs, fmt.Errorf("wan: restart proxy %s: %w", p.Listen, err))
		}
	}
	return errors.Join(errs...)
}

// Close stops the proxies and closes their connections.
func (l *Link) Close() {
	for _, p := range l.proxies {
		p.Stop()
	}
}

package wan

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// echoServer answers every byte with itself until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func openLink(t *testing.T) *Link {
	t.Helper()
	l, err := Open([]Route{{Listen: "127.0.0.1:0", Upstream: echoServer(t)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// pingPong sends one byte through the proxy and waits for its echo, n times, and returns the
// median round trip.
func pingPong(t *testing.T, addr string, n int) time.Duration {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var rtts []time.Duration
	b := []byte{1}
	for range n {
		start := time.Now()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		rtts = append(rtts, time.Since(start))
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2]
}

func TestPingPongTakesTheRoundTripTime(t *testing.T) {
	l := openLink(t)
	for _, rtt := range []time.Duration{0, 20 * time.Millisecond, 80 * time.Millisecond, 21 * time.Millisecond} {
		if err := l.SetRTT(rtt); err != nil {
			t.Fatal(err)
		}
		got := pingPong(t, l.Addrs()[0], 5)
		t.Logf("RTT %s: median ping-pong %s", rtt, got)
		// At least the RTT (each half is a floor), and not much more: the proxy's own cost on
		// loopback is well under a few milliseconds even on a loaded machine.
		if got < rtt || got > rtt+15*time.Millisecond {
			t.Errorf("RTT %s: a ping-pong took %s", rtt, got)
		}
		if l.RTT() != rtt {
			t.Errorf("RTT() = %s after SetRTT(%s)", l.RTT(), rtt)
		}
	}
}

func TestAnOpenConnectionGetsANewRTT(t *testing.T) {
	l := openLink(t)
	c, err := net.Dial("tcp", l.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := []byte{1}
	roundTrip := func() time.Duration {
		start := time.Now()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	if d := roundTrip(); d > 15*time.Millisecond {
		t.Fatalf("at RTT 0 a ping-pong took %s", d)
	}
	if err := l.SetRTT(40 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := roundTrip(); d < 40*time.Millisecond {
		t.Fatalf("the open connection's ping-pong took %s after SetRTT(40ms)", d)
	}
}

// A delay is not a bandwidth limit: bytes in flight are held side by side, so a bulk transfer
// takes about one round trip more than it would without the delay, not one per chunk.
func TestBulkTransferIsPipelinedAndIntact(t *testing.T) {
	l := openLink(t)
	const rtt = 80 * time.Millisecond
	if err := l.SetRTT(rtt); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", l.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := make([]byte, 16<<20)
	_, _ = rand.Read(payload)
	start := time.Now()
	go func() { _, _ = c.Write(payload) }()
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if !bytes.Equal(got, payload) {
		t.Fatal("the echo differs from what was sent")
	}
	// 16 MiB in 32 KiB chunks is 512 chunks each way: one round trip per chunk would be 41 s.
	if took < rtt || took > 2*time.Second {
		t.Fatalf("16 MiB through an 80 ms round trip took %s", took)
	}
}

func TestSetRTTWantsWholeMilliseconds(t *testing.T) {
	l := openLink(t)
	for _, bad := range []time.Duration{-time.Millisecond, 1500 * time.Microsecond} {
		if err := l.SetRTT(bad); err == nil {
			t.Errorf("SetRTT(%s) accepted", bad)
		}
	}
}

func TestHalvesAddUpToTheRoundTrip(t *testing.T) {
	for _, c := range []struct{ rtt, up, down time.Duration }{
		{0, 0, 0},
		{20 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond},
		{81 * time.Millisecond, 40 * time.Millisecond, 41 * time.Millisecond},
		{time.Millisecond, 0, time.Millisecond},
	} {
		up, down := halves(c.rtt)
		if up != c.up || down != c.down {
			t.Errorf("halves(%s) = %s, %s; want %s, %s", c.rtt, up, down, c.up, c.down)
		}
	}
}

func TestOpenWantsARoute(t *testing.T) {
	if _, err := Open(nil); err == nil {
		t.Fatal("Open(nil) succeeded")
	}
}

// TestParseRoutesReadsClusterShRemote: one route per line of `cluster.sh remote`, and a line
// that is not two addresses is an error naming it.
func TestParseRoutesReadsClusterShRemote(t *testing.T) {
	got, err := ParseRoutes("127.0.0.1:19016 127.0.0.1:19015\n127.0.0.1:19026 127.0.0.1:19025\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{{"127.0.0.1:19016", "127.0.0.1:19015"}, {"127.0.0.1:19026", "127.0.0.1:19025"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("ParseRoutes = %v, want %v", got, want)
	}
	if _, err := ParseRoutes("cluster europe has no remote listener"); err == nil || !strings.Contains(err.Error(), "no remote listener") {
		t.Fatalf("a bad line: err = %v, want one naming the line", err)
	}
}

// TestStallHoldsBytesUntilMend: while stalled, an open connection gets nothing back (and a new
// one is accepted but answers nothing); at Mend every byte sent meanwhile arrives, in order, and
// the round-trip time set before is kept.
func TestStallHoldsBytesUntilMend(t *testing.T) {
	l := openLink(t)
	if err := l.SetRTT(20 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", l.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pingPong(t, l.Addrs()[0], 1) // the proxy is up
	if err := l.Stall(); err != nil {
		t.Fatal(err)
	}
	sent := []byte("held, not dropped")
	if _, err := c.Write(sent); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 64)); err == nil {
		t.Fatalf("read %d bytes through a stalled link", n)
	}
	if err := l.Mend(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(sent))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("after Mend: %v", err)
	}
	if !bytes.Equal(got, sent) {
		t.Fatalf("after Mend got %q, want %q", got, sent)
	}
	if d := pingPong(t, l.Addrs()[0], 3); d < 20*time.Millisecond {
		t.Fatalf("after Mend a ping-pong took %s, want the 20ms RTT kept", d)
	}
}

// TestBreakClosesAndRefusesUntilMend: a Break closes open connections and refuses new ones;
// after Mend the same address answers again.
func TestBreakClosesAndRefusesUntilMend(t *testing.T) {
	l := openLink(t)
	addr := l.Addrs()[0]
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l.Break()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("an open connection survived Break")
	}
	if d, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		d.Close()
		t.Fatal("a new connection was accepted during Break")
	}
	if err := l.Mend(); err != nil {
		t.Fatal(err)
	}
	pingPong(t, addr, 1)
}

// TestStallRepliesPassesRequests: with the replies stalled the server still gets what the client
// sends (the echo server answers, the answer is held); at Mend the answer arrives.
func TestStallRepliesPassesRequests(t *testing.T) {
	got := make(chan []byte, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err == nil {
			got <- b
			_, _ = c.Write(b)
		}
		_, _ = io.Copy(io.Discard, c)
	}()
	l, err := Open([]Route{{Listen: "127.0.0.1:0", Upstream: ln.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.StallReplies(); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", l.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if string(b) != "ping" {
			t.Fatalf("the server got %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the server while the replies were stalled")
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 4)); err == nil {
		t.Fatalf("read %d bytes of a stalled reply", n)
	}
	if err := l.Mend(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
		t.Fatalf("after Mend: %q, %v", b, err)
	}
}

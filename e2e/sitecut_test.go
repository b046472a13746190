//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmirror/kmirror/pkg/verify"
)

// The site-cut test puts each cluster in its own network namespace ("site"), joined by a veth
// pair with 10.77.0.0/24 addresses that exist only inside the two namespaces. kmirror runs at the
// target site. Counting and verifying happen in a copy of this test binary started inside the
// target namespace (TestSiteHelper), since the test process itself stays outside both sites.

const (
	nsEurope, nsUS     = "kmirror-e2e-eu", "kmirror-e2e-us"
	addrEurope, addrUS = "10.77.0.1", "10.77.0.2"
)

// TestSiteCut cuts the link between the sites for 30 s while kmirror is copying and while the
// source keeps receiving records, restores it, and expects kmirror to recover by itself and
// catch up with nothing lost.
func TestSiteCut(t *testing.T) {
	inEurope, inUS, europe, us := startSites(t)

	siteHelper(t, nsEurope, "create", europe.bootstrap[0], "", "sitecut")

	produceBatch := func(from, n int) {
		var lines []string
		for i := from; i < from+n; i++ {
			lines = append(lines, fmt.Sprintf("k%d\tv%d-%s", i, i, strings.Repeat("s", 100)))
		}
		for p := 0; p < 4; p++ {
			var part []string
			for i, l := range lines {
				if i%4 == p {
					part = append(part, l)
				}
			}
			cmd := exec.Command(inEurope[0], append(inEurope[1:], "kcat", "-P", "-b", europe.bootstrap[0], "-t", "sitecut", "-p", strconv.Itoa(p), "-K", "\t", "-z", "lz4")...)
			cmd.Stdin = strings.NewReader(strings.Join(part, "\n") + "\n")
			if out, err := combinedOwned(t, cmd); err != nil {
				t.Fatalf("kcat in %s: %v\n%s", nsEurope, err, out)
			}
		}
	}
	produceBatch(0, 40_000)

	cfg := writeConfig(t, baseConfig(europe, us, "sitecut", ""))
	k := startKmirror(t, cfg, inUS...)
	count := func() int64 { return siteCount(t, us.bootstrap[0]) }
	waitFor(t, "the first batch mirrored", 2*time.Minute, func() bool { return count() >= 40_000 })
	time.Sleep(2 * time.Second) // let a periodic commit record it

	mustRun(t, "ip", "netns", "exec", nsEurope, "ip", "link", "set", "kmeu0", "down")
	cutAt := count()
	t.Logf("site cut: link down with %d of 40000 records on the target", cutAt)
	produceBatch(40_000, 20_000) // the source site keeps working during the cut
	time.Sleep(30 * time.Second)
	mustRun(t, "ip", "netns", "exec", nsEurope, "ip", "link", "set", "kmeu0", "up")
	t.Logf("site cut: link restored after 30s; target holds %d", count())

	start := time.Now()
	waitFor(t, "catch-up after the link came back", 4*time.Minute, func() bool { return count() >= 60_000 })
	t.Logf("site cut: caught up %s after the link came back", time.Since(start).Round(time.Second))
	k.stop()
	res := siteHelper(t, nsUS, "compare", europe.bootstrap[0], us.bootstrap[0], "sitecut")
	t.Logf("figures: %s", res)
	if !strings.HasPrefix(res, "complete") {
		t.Fatalf("site cut: records lost, changed or out of order: %s", res)
	}
}

func mustRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// siteHelper runs TestSiteHelper inside namespace ns and returns its last output line.
func siteHelper(t *testing.T, ns, action, src, dst, topic string) string {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestSiteHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "E2E_SITE_ACTION="+action, "E2E_SITE_SRC="+src, "E2E_SITE_DST="+dst, "E2E_SITE_TOPIC="+topic)
	out, err := combinedOwned(t, cmd)
	if err != nil {
		t.Fatalf("site helper %s in %s: %v\n%s", action, ns, err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "RESULT ") {
			return strings.TrimPrefix(l, "RESULT ")
		}
	}
	t.Fatalf("site helper %s printed no result:\n%s", action, out)
	return ""
}

func siteCount(t *testing.T, broker string) int64 {
	n, _ := strconv.ParseInt(siteHelper(t, nsUS, "count", broker, "", "sitecut"), 10, 64)
	return n
}

// TestSiteHelper is not a test of its own: TestSiteCut starts it inside a namespace to create a
// topic, count a topic or compare the two clusters, and reads the RESULT line it prints.
func TestSiteHelper(t *testing.T) {
	action := os.Getenv("E2E_SITE_ACTION")
	if action == "" {
		t.Skip("helper for TestSiteCut, run inside a network namespace")
	}
	src, dst, topic := os.Getenv("E2E_SITE_SRC"), os.Getenv("E2E_SITE_DST"), os.Getenv("E2E_SITE_TOPIC")
	c := &cluster{name: "site", bootstrap: []string{src}}
	switch action {
	case "create":
		c.createTopic(t, topic, 4, 1, nil)
		fmt.Println("RESULT ok")
	case "count":
		fmt.Println("RESULT", c.count(t, topic))
	case "compare":
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		rep, err := verify.Compare(ctx, []string{src}, []string{dst}, map[string]string{topic: topic})
		if err != nil {
			t.Fatal(err)
		}
		verdict := "complete"
		if !rep.Complete() {
			verdict = "INCOMPLETE"
		}
		fmt.Println("RESULT", verdict+":", strings.ReplaceAll(rep.String(), "\n", ";"))
	}
}

// startSites puts europe and us in network namespaces of their own joined by a veth pair (20 ms
// netem delay each way where the kernel has it: a WAN-like round trip of 40 ms), starts a
// cluster in each and returns the command prefixes for both namespaces and the clusters.
func startSites(t *testing.T) (inEurope, inUS []string, europe, us *cluster) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("site cut: needs root to create network namespaces (ip netns); skipped")
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), nsEurope) || strings.Contains(string(out), nsUS) {
		// Another run's, or an interrupted run's: not ours to delete.
		t.Fatalf("site cut: network namespace %s or %s exists already (another run, or left by an interrupted one: ip netns del them)\n%s",
			nsEurope, nsUS, out)
	}
	if err := exec.Command("ip", "netns", "add", nsEurope).Run(); err != nil {
		t.Skipf("site cut: this machine does not allow network namespaces (ip netns add: %v); skipped", err)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", nsEurope).Run() })
	mustRun(t, "ip", "netns", "add", nsUS)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", nsUS).Run() })
	mustRun(t, "ip", "link", "add", "kmeu0", "netns", nsEurope, "type", "veth", "peer", "name", "kmus0", "netns", nsUS)
	for _, c := range [][]string{
		{nsEurope, "ip", "addr", "add", addrEurope + "/24", "dev", "kmeu0"},
		{nsUS, "ip", "addr", "add", addrUS + "/24", "dev", "kmus0"},
		{nsEurope, "ip", "link", "set", "kmeu0", "up"},
		{nsUS, "ip", "link", "set", "kmus0", "up"},
		{nsEurope, "ip", "link", "set", "lo", "up"},
		{nsUS, "ip", "link", "set", "lo", "up"},
	} {
		mustRun(t, append([]string{"ip", "netns", "exec"}, c...)...)
	}
	if out, err := exec.Command("ip", "netns", "exec", nsEurope, "tc", "qdisc", "add", "dev", "kmeu0", "root", "netem", "delay", "20ms").CombinedOutput(); err != nil {
		t.Logf("site cut: no netem qdisc in this kernel (%s); running without added delay", strings.TrimSpace(string(out)))
	} else {
		mustRun(t, "ip", "netns", "exec", nsUS, "tc", "qdisc", "add", "dev", "kmus0", "root", "netem", "delay", "20ms")
		t.Log("site cut: 20 ms netem delay each way (40 ms round trip)")
	}
	europe = startCluster(t, "europe", "--netns", nsEurope, "--addr", addrEurope)
	us = startCluster(t, "us", "--netns", nsUS, "--addr", addrUS)
	return []string{"ip", "netns", "exec", nsEurope}, []string{"ip", "netns", "exec", nsUS}, europe, us
}

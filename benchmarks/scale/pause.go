package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// arrivals notes when each record of each target partition was read.
type arrivals struct {
	mu sync.Mutex
	at map[string][]time.Time // "topic/partition" → arrival times, in order
}

func (a *arrivals) follow(ctx context.Context, cl *kgo.Client) {
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		now := time.Now()
		a.mu.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			k := fmt.Sprintf("%s/%d", r.Topic, r.Partition)
			a.at[k] = append(a.at[k], now)
		})
		a.mu.Unlock()
	}
}

// pauses is what the gaps of the partitions' records show in one window.
type pauses struct {
	longest, median time.Duration // the longest gap of any partition; the median of the partitions' longest
	quartile        time.Duration // the first quartile of the partitions' longest gaps
	overSecond      int           // partitions with a gap over a second
	open            int           // partitions with no record in the last second of the window
	partitions      int
}

// gaps returns, for the window [from, from+w], each partition's longest gap between two records
// that overlaps it. A partition whose last record came before the window's end counts the time
// from it to the end as a gap too (the pause is still going on: a lower bound).
func (a *arrivals) gaps(from time.Time, w time.Duration) pauses {
	a.mu.Lock()
	defer a.mu.Unlock()
	to := from.Add(w)
	var p pauses
	var per []time.Duration
	for _, ts := range a.at {
		var g time.Duration
		for i := 1; i < len(ts); i++ {
			if ts[i].Before(from) || ts[i-1].After(to) {
				continue
			}
			g = max(g, ts[i].Sub(ts[i-1]))
		}
		if last := ts[len(ts)-1]; last.Before(to) {
			g = max(g, to.Sub(last))
			if to.Sub(last) > time.Second {
				p.open++
			}
		}
		per = append(per, g)
		if g > time.Second {
			p.overSecond++
		}
	}
	if len(per) == 0 {
		return p
	}
	sort.Slice(per, func(i, j int) bool { return per[i] < per[j] })
	p.longest, p.median, p.quartile, p.partitions = per[len(per)-1], per[len(per)/2], per[len(per)/4], len(per)
	return p
}

func (a *arrivals) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.at)
}

func runPause(o options) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "kmirror-pause-")
	if err != nil {
		return err
	}
	say := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	cl, err := upClusters(o.heap, o.keep, o.at)
	if err != nil {
		return err
	}
	defer cl.down()
	srcCl, err := kgo.NewClient(kgo.SeedBrokers(cl.src...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	defer srcCl.Close()
	ntopics := max(o.topics, 1)
	if ntopics == 1000 { // the scale default: 12 × 10 = 120 partitions here
		ntopics = 12
	}
	parts := ntopics * o.partitions

	var rep strings.Builder
	fmt.Fprintf(&rep, "# kmirror: how long partitions stop when a member joins, leaves or restarts — %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&rep, "Command: `%s`.\n\n", commandLine())
	fmt.Fprintf(&rep, "%d partitions (%d topics), %d records/s spread over them (one every %s per partition), two kmirror members, "+
		"Kafka 4.3.1 (one KRaft node per cluster), consumer defaults (session_timeout 45s, sticky assignment: sarama's rebalance is eager). "+
		"A franz-go consumer on the target notes each record's arrival; a gap is the time between two records of one partition; "+
		"the window is %s from the event. Each membership mirrors topics of its own, written from its start (kmirror starts at their beginning). "+
		"The quartile column says what the partitions that were not moved saw.\n\n", parts, ntopics, o.pauseRate, time.Duration(float64(time.Second)*float64(parts)/float64(o.pauseRate)), o.window)
	fmt.Fprintln(&rep, "| membership | event | longest gap, any partition | median of the partitions' longest gaps | first quartile of them | partitions with a gap > 1 s | still stopped at the window's end |")
	fmt.Fprintln(&rep, "|---|---|---|---|---|---|---|")

	for _, static := range []bool{false, true} {
		kind := "dynamic"
		if static {
			kind = "static (group_instance_id)"
		}
		short := "dynamic"
		if static {
			short = "static"
		}
		group := "kmirror-pause-" + short
		// Topics of this membership's own: the other's copies on the target must not be caught up
		// inside this one's windows.
		topics := topicNames("pause-"+short, ntopics)
		if err := createTopics(ctx, kadm.NewClient(srcCl), topics, o.partitions); err != nil {
			return err
		}
		pctx, stopPace := context.WithCancel(ctx)
		defer stopPace()
		go pace(pctx, srcCl, topics, o.partitions, o.pauseRate)
		dst, err := kgo.NewClient(kgo.SeedBrokers(cl.dst...), kgo.ConsumeRegex(), kgo.ConsumeTopics(`pause-`+short+`\..*`),
			// kmirror creates the target topics after this client starts: a regex consumer finds
			// new topics at its metadata refresh (every 5 min by default).
			kgo.MetadataMinAge(time.Second), kgo.MetadataMaxAge(2*time.Second), kgo.FetchMaxWait(50*time.Millisecond),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()))
		if err != nil {
			return err
		}
		arr := &arrivals{at: map[string][]time.Time{}}
		fctx, stopFollow := context.WithCancel(ctx)
		defer stopFollow()
		go arr.follow(fctx, dst)
		member := func(name string) (string, string) {
			cfg := filepath.Join(work, group+"-"+name+".yaml")
			id := ""
			if static {
				id = "member-" + name
			}
			body := fmt.Sprintf(`source: {alias: src, bootstrap: [%s]}
target: {alias: dst, bootstrap: [%s]}
topics: {include: ["pause-%s\\..*"], replication_factor: 1}
consumer: {group_id: %s, group_instance_id: %q}
telemetry: {listen: ""}
log: {format: json}
`, strings.Join(cl.src, ", "), strings.Join(cl.dst, ", "), short, group, id)
			_ = os.WriteFile(cfg, []byte(body), 0o644)
			return cfg, filepath.Join(work, group+"-"+name)
		}
		cfgA, logA := member("a")
		cfgB, logB := member("b")
		start := func(cfg, log string, n int) (*kmirrorProc, error) {
			return startKmirror(o.spawn, o.bin, cfg, fmt.Sprintf("%s-%d.log", log, n), "", o.set, o.env)
		}
		measureFor := func(event string, at time.Time, w time.Duration) {
			time.Sleep(time.Until(at.Add(w)))
			p := arr.gaps(at, w)
			l, m, q := p.longest.Round(10*time.Millisecond), p.median.Round(10*time.Millisecond), p.quartile.Round(10*time.Millisecond)
			say("%s %s: longest gap %s, median %s, first quartile %s, %d of %d partitions over 1s, %d still stopped",
				kind, event, l, m, q, p.overSecond, p.partitions, p.open)
			fmt.Fprintf(&rep, "| %s | %s | %s | %s | %s | %d of %d | %d |\n", kind, event, l, m, q, p.overSecond, p.partitions, p.open)
			_ = os.WriteFile(o.out, []byte(rep.String()), 0o644) // what is measured so far, should the run be cut short
		}
		measure := func(event string, at time.Time) { measureFor(event, at, o.window) }
		a, err := start(cfgA, logA, 1)
		if err != nil {
			return err
		}
		for arr.count() < parts {
			if err := a.alive(); err != nil {
				return err
			}
			time.Sleep(time.Second)
		}
		time.Sleep(15 * time.Second)
		measure("steady, one member (baseline)", time.Now().Add(-15*time.Second))
		t := time.Now()
		b, err := start(cfgB, logB, 1)
		if err != nil {
			return err
		}
		measure("a second member joins", t)
		if !static {
			t = time.Now()
			if _, err := b.stop(); err != nil {
				return err
			}
			measure("the second member leaves (SIGTERM)", t)
			if b, err = start(cfgB, logB, 2); err != nil {
				return err
			}
			time.Sleep(o.window)
		}
		t = time.Now()
		took, err := b.stop()
		if err != nil {
			return err
		}
		if b, err = start(cfgB, logB, 3); err != nil {
			return err
		}
		measure(fmt.Sprintf("the second member restarts (stop took %s, then started at once)", took.Round(100*time.Millisecond)), t)
		if static {
			t = time.Now()
			if _, err := b.stop(); err != nil {
				return err
			}
			// Its partitions wait for the session timeout (45 s) and the rebalance after it.
			measureFor("the second member stops for good (no LeaveGroup: its partitions wait for session_timeout)", t, max(o.window, 75*time.Second))
		} else if _, err := b.stop(); err != nil {
			return err
		}
		if _, err := a.stop(); err != nil {
			return err
		}
		stopPace()
		stopFollow()
		dst.Close()
	}
	fmt.Fprintf(&rep, "\nkmirror's logs: %s\n", work)
	if err := os.WriteFile(o.out, []byte(rep.String()), 0o644); err != nil {
		return err
	}
	say("written to %s", o.out)
	return nil
}

package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// startWatch records where kmirror's start-up time goes, for the report: a CPU profile of its
// first 30 s (start-cpu.pprof), a dump of every goroutine's stack every 5 s until all partitions
// flow (start-goroutines-<s>s.txt: what the start is waiting for) and a timeline of target topics
// there and partitions flowing, one mark per second.
type startWatch struct {
	started time.Time
	dir     string
	addr    string
	stop    chan struct{}
	done    chan struct{}
	marks   []string
	last    string
}

func watchStart(addr, dir string, started time.Time) *startWatch {
	w := &startWatch{started: started, dir: dir, addr: addr, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *startWatch) run() {
	defer close(w.done)
	// /debug/pprof answers once kmirror's telemetry listener is up, early in its start.
	for i := 0; i < 100; i++ {
		if resp, err := http.Get("http://" + w.addr + "/debug/pprof/"); err == nil {
			resp.Body.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cpu := make(chan struct{})
	go func() { profile(w.addr, filepath.Join(w.dir, "start-cpu.pprof"), "cpu", 30*time.Second); close(cpu) }()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			<-cpu
			return
		case <-t.C:
			at := time.Since(w.started).Round(time.Second)
			resp, err := http.Get("http://" + w.addr + "/debug/pprof/goroutine?debug=1")
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			_ = os.WriteFile(filepath.Join(w.dir, fmt.Sprintf("start-goroutines-%03ds.txt", int(at.Seconds()))), b, 0o644)
		}
	}
}

// mark notes the progress at this moment, when it changed.
func (w *startWatch) mark(topics, flowing int) {
	s := fmt.Sprintf("%d target topics, %d partitions flowing", topics, flowing)
	if s == w.last {
		return
	}
	w.last = s
	line := fmt.Sprintf("%5.1f s: %s", time.Since(w.started).Seconds(), s)
	fmt.Fprintln(os.Stderr, "start", line)
	w.marks = append(w.marks, line)
}

// finish stops the dumps, waits for the CPU profile and returns the timeline.
func (w *startWatch) finish() string {
	close(w.stop)
	<-w.done
	return strings.Join(w.marks, "\n")
}

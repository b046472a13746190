// Package bare holds what the benchmark's bare mirrors (benchmarks/baremirror on franz-go,
// benchmarks/baresarama on sarama) share: their command line. Each mirror is a Run; Main parses
// the flags into a Config, runs it until SIGINT or SIGTERM, and exits 1 naming the error, or 2
// when a required flag is missing.
package bare

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Config is one bare mirror's job: one topic from source to target under a consumer group.
type Config struct {
	Source, Target []string
	Topic, Group   string
}

// Run mirrors c.Topic until ctx is cancelled (nil then) or a fetch or a produce fails.
type Run func(ctx context.Context, c Config) error

// Main is the command name's main: --source, --target, --topic and --group (default name).
func Main(name string, run Run) {
	var c Config
	var source, target string
	flag.StringVar(&source, "source", "", "source bootstrap servers, comma-separated")
	flag.StringVar(&target, "target", "", "target bootstrap servers, comma-separated")
	flag.StringVar(&c.Topic, "topic", "", "the topic to mirror (the same name on the target)")
	flag.StringVar(&c.Group, "group", name, "consumer group on the source")
	flag.Parse()
	c.Source, c.Target = splitList(source), splitList(target)
	if len(c.Source) == 0 || len(c.Target) == 0 || c.Topic == "" || c.Group == "" {
		fmt.Fprintf(os.Stderr, "%s: --source, --target, --topic and --group are required\n", name)
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

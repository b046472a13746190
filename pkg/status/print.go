package status

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Print writes r for a person: a summary of the flow, then a table of its partitions (one line
// each, stalled ones marked), the heartbeat, the group sync and the latest errors.
func Print(w io.Writer, r Report) {
	state := "READY"
	if !r.Ready {
		state = "NOT READY: " + r.NotReady
	}
	fmt.Fprintf(w, "kmirror %s  %s -> %s  group %s  delivery %s\n", r.Version, r.Source, r.Target, r.Group, r.DeliveryMode)
	fmt.Fprintf(w, "state:      %s\n", state)
	fmt.Fprintf(w, "topics:     include %q", r.Include)
	if len(r.Exclude) > 0 {
		fmt.Fprintf(w, " exclude %q", r.Exclude)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "mirroring:  %d partitions of %d topics, lag %d records, RPO %s, %d stalled\n",
		r.Partitions, len(r.Topics), r.LagRecords, seconds(r.RPOSeconds), r.Stalled)
	switch hb := r.Heartbeat; {
	case hb == nil:
		fmt.Fprintln(w, "heartbeat:  off (heartbeats.enabled)")
	case hb.MirroredAt.IsZero():
		fmt.Fprintf(w, "heartbeat:  none mirrored yet (topic %s)\n", hb.Topic)
	default:
		fmt.Fprintf(w, "heartbeat:  last mirrored %s ago (written %s, on the target %s later; topic %s)\n",
			seconds(hb.AgeSeconds), hb.EmittedAt.Format(time.RFC3339), seconds(hb.LatencySeconds), hb.Topic)
	}
	switch g := r.GroupSync; {
	case g == nil:
		fmt.Fprintln(w, "group sync: off (offset_map.enabled and groups.include)")
	case g.LastRound.IsZero():
		fmt.Fprintf(w, "group sync: include %q, no round finished yet\n", g.Include)
	default:
		fmt.Fprintf(w, "group sync: include %q, last round %s ago: %d groups, %d partitions not yet translatable, %d failed\n",
			g.Include, seconds(r.At.Sub(g.LastRound).Seconds()), g.Groups, g.Untranslatable, len(g.Failed))
		names := make([]string, 0, len(g.Failed))
		for name := range g.Failed {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			fmt.Fprintf(w, "            %s: %s\n", name, g.Failed[name])
		}
	}
	if len(r.Topics) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TOPIC\tTARGET\tPARTITION\tLAG\tLAG BYTES\tRPO\tSTATE")
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				state := "ok"
				switch {
				case p.Stalled:
					state = "STALLED since " + p.StalledSince.Format(time.RFC3339)
				case p.Measured.IsZero():
					state = "starting"
				case p.LagRecords > 0:
					state = "catching up"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", t.Source, t.Target, p.Partition, p.LagRecords, p.LagBytes, seconds(p.RPOSeconds), state)
			}
		}
		_ = tw.Flush()
	}
	if len(r.Errors) > 0 {
		fmt.Fprintln(w, "\nlatest errors (latest first):")
		for _, e := range r.Errors {
			times := ""
			if e.Count > 1 {
				times = fmt.Sprintf(" (%d times)", e.Count)
			}
			fmt.Fprintf(w, "  %s  %s: %s%s\n", e.At.Format(time.RFC3339), e.Where, strings.ReplaceAll(e.Error, "\n", " "), times)
		}
	}
}

// seconds prints a duration in seconds the way a person reads it: 0s, 12ms, 1.2s, 3m4s.
func seconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kmirror/kmirror/pkg/groups"
	"github.com/kmirror/kmirror/pkg/mirror"
	"github.com/kmirror/kmirror/pkg/offsetmap"
	"github.com/kmirror/kmirror/pkg/telemetry"
)

func newOffsetsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "offsets",
		Short: "Consumer-group positions across the two clusters",
	}
	cmd.AddCommand(newTranslateCommand())
	return cmd
}

// groupFlags are the flags the offsets and failover commands share.
type groupFlags struct {
	configFlags
	topic         string
	json          bool
	timeout       time.Duration
	sourceTimeout time.Duration
}

func (f *groupFlags) register(cmd *cobra.Command) {
	f.configFlags.register(cmd)
	cmd.Flags().StringVar(&f.topic, "topic", "", "only this source topic")
	cmd.Flags().BoolVar(&f.json, "json", false, "print JSON (the same as GET /offsets/translate)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 2*time.Minute, "give up connecting and reading after this long")
	cmd.Flags().DurationVar(&f.sourceTimeout, "source-timeout", 30*time.Second,
		"a source not reached within this long is taken as lost: the groups' offsets on the target (the last synced) are reported")
}

// open loads the configuration and opens the group tools; logs go to stderr, warnings and up.
func (f *groupFlags) open(ctx context.Context, force bool) (*mirror.GroupTools, error) {
	cfg, err := f.load()
	if err != nil {
		return nil, err
	}
	log, err := telemetry.NewLogger(telemetry.LogConfig{Level: "warn", Format: cfg.Log.Format}, cfg.Source.Alias, cfg.Target.Alias)
	if err != nil {
		return nil, err
	}
	return mirror.OpenGroupTools(ctx, cfg, log, force, f.sourceTimeout)
}

// lastSynced reports, when the source cannot be read, what each group holds on the target, and
// exits 1: nothing was translated or committed.
func (f *groupFlags) lastSynced(ctx context.Context, cmd *cobra.Command, tools *mirror.GroupTools, names []string) error {
	var reps []groups.Report
	for _, g := range names {
		r, err := tools.LastSynced(ctx, g)
		if err != nil {
			return err
		}
		reps = append(reps, r)
	}
	out := cmd.OutOrStdout()
	if f.json {
		if err := writeJSON(out, map[string]any{"source_error": tools.SourceErr.Error(), "groups": reps}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "the source cannot be read (%v):\nnothing was translated or committed; each group's offsets on the target are the last ones synced\n", tools.SourceErr)
		for _, r := range reps {
			printReport(out, r, true)
		}
	}
	return exitError{code: 1}
}

func newTranslateCommand() *cobra.Command {
	var flags groupFlags
	var group string
	cmd := &cobra.Command{
		Use:   "translate --group G [--topic T]",
		Short: "Print where a source consumer group would resume on the target, partition by partition",
		Long: "translate reads the group's committed offsets on the source and translates each, with the offset\n" +
			"map kmirror keeps on the target, into the target offset where the group resumes with nothing\n" +
			"skipped and nothing read twice; a position not yet mirrored says how far behind. It changes\n" +
			"nothing. It exits 0 when every partition translates exactly, 1 otherwise.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if group == "" {
				return fmt.Errorf("--group: name the consumer group")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), flags.timeout)
			defer cancel()
			tools, err := flags.open(ctx, false)
			if err != nil {
				return err
			}
			defer tools.Close()
			if tools.SourceErr != nil {
				return flags.lastSynced(ctx, cmd, tools, []string{group})
			}
			rep, err := tools.Syncer.Plan(ctx, group, flags.topic)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if flags.json {
				if err := writeJSON(out, rep); err != nil {
					return err
				}
			} else {
				printReport(out, rep, false)
			}
			if rep.Untranslatable() > 0 {
				return exitError{code: 1}
			}
			return nil
		},
	}
	flags.register(cmd)
	cmd.Flags().StringVar(&group, "group", "", "the consumer group (required)")
	return cmd
}

func newFailoverCommand() *cobra.Command {
	var flags groupFlags
	var names []string
	var wait time.Duration
	var force bool
	cmd := &cobra.Command{
		Use:   "failover --group G [--group G2 ...] [--wait D] [--force]",
		Short: "Move consumer groups to the target: wait until their positions are mirrored, commit them there, report",
		Long: "failover is the runbook step of moving consumer groups from the source to the target. It waits\n" +
			"(at most --wait) until every partition of the groups translates exactly — the mirror has copied\n" +
			"everything before the groups' positions — then commits the translated offsets to the same groups\n" +
			"on the target and prints, per partition, the source position, the target position, the records\n" +
			"not yet mirrored and what was done. A group with members on the target is not touched, nor one\n" +
			"whose offsets another client moves (read again a second later; unless --force); a target\n" +
			"group ahead of the translation is not moved back unless --force. It exits 0 when every partition\n" +
			"of every group is at its translated position on the target, 1 otherwise (a group with no\n" +
			"committed offsets on the mirrored topics included: nothing of it was moved).",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(names) == 0 {
				return fmt.Errorf("--group: name at least one consumer group")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), flags.timeout+wait)
			defer cancel()
			tools, err := flags.open(ctx, force)
			if err != nil {
				return err
			}
			defer tools.Close()
			if tools.SourceErr != nil {
				return flags.lastSynced(ctx, cmd, tools, names)
			}
			errOut := cmd.ErrOrStderr()
			reps, ferr := tools.Syncer.Failover(ctx, names, flags.topic, wait, time.Second, func(pending int) {
				fmt.Fprintf(errOut, "waiting: %d partitions not mirrored up to their group's position yet\n", pending)
			})
			out := cmd.OutOrStdout()
			if flags.json {
				if err := writeJSON(out, map[string]any{"groups": reps}); err != nil {
					return err
				}
			} else {
				for _, r := range reps {
					printReport(out, r, true)
				}
			}
			if ferr != nil {
				return ferr
			}
			if empty := withoutOffsets(names, reps); len(empty) > 0 {
				for _, g := range empty {
					fmt.Fprintf(errOut, "kmirror: failover: group %q has no committed offsets on the mirrored topics of the source%s: "+
						"nothing was moved (check the group id, --topic and topics.include)\n", g, onTopic(flags.topic))
				}
				return exitError{code: exitFailure}
			}
			for _, r := range reps {
				for _, p := range r.Partitions {
					if p.Action != groups.ActionCommitted && p.Action != groups.ActionUnchanged {
						return exitError{code: 1}
					}
				}
			}
			return nil
		},
	}
	flags.register(cmd)
	cmd.Flags().StringArrayVar(&names, "group", nil, "a consumer group to move (repeatable)")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait at most this long for the mirror to reach the groups' positions")
	cmd.Flags().BoolVar(&force, "force", false, "also move target groups that are ahead of the translation back to it, and groups another client commits to")
	return cmd
}

// withoutOffsets returns the groups asked for whose report holds no partition: a failover that
// moved nothing for them must not exit 0, as if they were on the target now.
func withoutOffsets(asked []string, reps []groups.Report) []string {
	found := make(map[string]bool, len(reps))
	for _, r := range reps {
		if len(r.Partitions) > 0 {
			found[r.Group] = true
		}
	}
	var empty []string
	for _, g := range asked {
		if !found[g] {
			empty = append(empty, g)
		}
	}
	return empty
}

func onTopic(topic string) string {
	if topic == "" {
		return ""
	}
	return fmt.Sprintf(" (topic %s)", topic)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printReport prints a group's partitions as a table; applied adds what was done.
func printReport(w io.Writer, r groups.Report, applied bool) {
	state := r.TargetState
	if r.Active {
		state += ", active: its members own its offsets"
	}
	if r.CommittedByOthers {
		state += ", committed by another client: its offsets changed since kmirror last wrote them, nothing is committed without --force"
	}
	fmt.Fprintf(w, "group %s (on the target: %s)\n", r.Group, state)
	if len(r.Partitions) == 0 {
		fmt.Fprintln(w, "  no committed offsets on mirrored topics")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	head := "  TOPIC\tPARTITION\tSOURCE OFFSET\tTARGET OFFSET\tTARGET COMMITTED\tNOT YET MIRRORED"
	if applied {
		head += "\tACTION"
	}
	fmt.Fprintln(tw, head)
	for _, p := range r.Partitions {
		target, behind := "-", "0"
		switch p.Status {
		case offsetmap.Exact:
			target = fmt.Sprint(p.Target)
		case offsetmap.NotYet:
			behind = "unknown"
			if p.Behind >= 0 {
				behind = fmt.Sprintf("%d offsets", p.Behind)
			}
			target = "not yet mirrored"
		case offsetmap.Unknown:
			target, behind = "unknown: "+p.Reason, "-"
		}
		if p.Action == groups.ActionLastSynced {
			target, behind = fmt.Sprint(p.Target), "unknown"
		}
		committed := "-"
		if p.TargetCommitted >= 0 {
			committed = fmt.Sprint(p.TargetCommitted)
		}
		source := fmt.Sprint(p.Source)
		if p.Source < 0 {
			source = "-"
		}
		line := fmt.Sprintf("  %s\t%d\t%s\t%s\t%s\t%s", p.Topic, p.Partition, source, target, committed, behind)
		if applied {
			line += "\t" + p.Action
		}
		fmt.Fprintln(tw, line)
	}
	_ = tw.Flush()
}

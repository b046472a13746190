package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kmirror/kmirror/pkg/mirror"
	"github.com/kmirror/kmirror/pkg/telemetry"
	"github.com/kmirror/kmirror/pkg/topics"
)

func newTopicsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topics",
		Short: "The mirrored topics on the target: what kmirror creates, grows and syncs",
	}
	cmd.AddCommand(newTopicsPlanCommand())
	return cmd
}

func newTopicsPlanCommand() *cobra.Command {
	var flags configFlags
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Print what kmirror would do on the target for every mirrored topic, changing nothing",
		Long: "plan reads both clusters and prints, for every mirrored topic, what the daemon would do on the\n" +
			"target at its next topic refresh: topics to create (partitions, replication factor, configs),\n" +
			"partitions to add, synced configs that differ (key: target value → source value), read ACLs\n" +
			"to add (with topics.sync_acls), and topics in sync. It is the daemon's own decision, not\n" +
			"applied. It exits 0 once the plan is printed.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := flags.load()
			if err != nil {
				return err
			}
			log, err := telemetry.NewLogger(telemetry.LogConfig{Level: "warn", Format: cfg.Log.Format}, cfg.Source.Alias, cfg.Target.Alias)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			plan, err := mirror.PlanTopics(ctx, cfg, log)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), plan)
			}
			printPlan(cmd.OutOrStdout(), plan)
			return nil
		},
	}
	flags.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "give up connecting and reading after this long")
	return cmd
}

// printPlan writes a plan for people: one block per topic, a summary line last.
func printPlan(w io.Writer, plan topics.Plan) {
	var create, grow, configs, acls, inSync, problems int
	for _, p := range plan.Topics {
		name := p.Source
		if p.Target != p.Source {
			name += " → " + p.Target
		}
		if p.InSync() {
			inSync++
			fmt.Fprintf(w, "%s: in sync\n", name)
		} else {
			fmt.Fprintf(w, "%s:\n", name)
		}
		if p.Problem != "" {
			problems++
			fmt.Fprintf(w, "  not mirrored: %s\n", p.Problem)
		}
		if c := p.Create; c != nil {
			create++
			rf := fmt.Sprintf("replication factor %d", c.ReplicationFactor)
			if c.Requested > 0 {
				rf += fmt.Sprintf(" (topics.replication_factor %d, capped at the target's broker count)", c.Requested)
			}
			fmt.Fprintf(w, "  create: %d partitions, %s\n", c.Partitions, rf)
			for _, k := range slices.Sorted(maps.Keys(c.Configs)) {
				fmt.Fprintf(w, "    %s = %s\n", k, c.Configs[k])
			}
		}
		if g := p.Grow; g != nil {
			grow++
			fmt.Fprintf(w, "  add partitions: %d → %d\n", g.From, g.To)
		}
		if len(p.Configs) > 0 {
			configs++
			fmt.Fprintln(w, "  configs (target → source):")
			for _, c := range p.Configs {
				fmt.Fprintf(w, "    %s\n", c)
			}
		}
		if len(p.ACLs) > 0 {
			acls++
			fmt.Fprintln(w, "  add ACLs:")
			for _, a := range p.ACLs {
				fmt.Fprintf(w, "    %s\n", a)
			}
		}
		if p.ConfigProblem != "" {
			fmt.Fprintf(w, "  configs not compared: %s\n", p.ConfigProblem)
		}
	}
	if plan.ACLProblem != "" {
		fmt.Fprintf(w, "ACLs not compared: %s\n", plan.ACLProblem)
	}
	parts := []string{fmt.Sprintf("%d topics", len(plan.Topics)), fmt.Sprintf("%d to create", create),
		fmt.Sprintf("%d to grow", grow), fmt.Sprintf("%d with config differences", configs)}
	if acls > 0 {
		parts = append(parts, fmt.Sprintf("%d with ACLs to add", acls))
	}
	if problems > 0 {
		parts = append(parts, fmt.Sprintf("%d not mirrored", problems))
	}
	parts = append(parts, fmt.Sprintf("%d in sync", inSync))
	fmt.Fprintln(w, strings.Join(parts, ", "))
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/IBM/sarama"
	"github.com/spf13/cobra"

	"github.com/kmirror/kmirror/pkg/cluster"
	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/migrate"
)

func newMigrateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Take a deployment of another mirror over to kmirror",
	}
	cmd.AddCommand(newMigrateMM2Command())
	return cmd
}

type migrateFlags struct {
	out, flow, group, offsetsTopic, connector string
	configOnly, dryRun, force                 bool
	timeout                                   time.Duration
}

func newMigrateMM2Command() *cobra.Command {
	var f migrateFlags
	cmd := &cobra.Command{
		Use:   "mm2 FILE --out kmirror.yaml",
		Short: "Write kmirror's configuration from MirrorMaker 2's, and start kmirror's group where MirrorMaker 2 stopped",
		Long: "mm2 reads MirrorMaker 2's configuration (an mm2.properties, or a Strimzi KafkaMirrorMaker2 resource) and\n" +
			"writes the kmirror configuration of one flow to --out, validated; every setting with no equivalent, or\n" +
			"approximated, is said on stderr, one line each. Then it reads where MirrorMaker 2 stopped (its\n" +
			"MirrorSourceConnector's source offsets in the Connect offsets topic on the target) and commits those\n" +
			"positions for kmirror's consumer group on the source, printing them per partition, so that kmirror\n" +
			"continues where MirrorMaker 2 stopped, in either delivery mode. Stop MirrorMaker 2 first. It refuses a group\n" +
			"that already has committed offsets (--force overwrites them) or members, and exactly_once positions of an\n" +
			"earlier kmirror run in the target's positions groups (--force deletes them). --dry-run writes and commits nothing: it\n" +
			"prints the configuration and the positions.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMigrateMM2(cmd, args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.out, "out", "", "write the kmirror configuration to this file (required unless --dry-run)")
	fl.StringVar(&f.flow, "flow", "", "the flow to migrate, <source>-><target> (needed when several are enabled)")
	fl.StringVar(&f.group, "group", "", "kmirror's consumer group on the source (consumer.group_id); default kmirror-<source>-<target>")
	fl.StringVar(&f.offsetsTopic, "offsets-topic", "", "MirrorMaker 2's Connect offsets topic on the target (default: mm2-offsets.<source>.internal "+
		"for dedicated mode, spec.target.offsetStorageTopic for Strimzi; a Connect cluster's offset.storage.topic otherwise)")
	fl.StringVar(&f.connector, "connector", "", "read the positions of this connector only (default: every MirrorSourceConnector of the source alias)")
	fl.BoolVar(&f.configOnly, "config-only", false, "write the configuration only: do not read MirrorMaker 2's positions nor seed the group")
	fl.BoolVar(&f.dryRun, "dry-run", false, "write and commit nothing: print the configuration and the positions that would be seeded")
	fl.BoolVar(&f.force, "force", false, "seed even though kmirror's group already has committed offsets (they are overwritten) or the target's positions groups hold positions (they are deleted)")
	fl.DurationVar(&f.timeout, "timeout", 2*time.Minute, "give up connecting and reading after this long")
	return cmd
}

func runMigrateMM2(cmd *cobra.Command, path string, f migrateFlags) error {
	if f.out == "" && !f.dryRun {
		return fmt.Errorf("--out: name the file to write the kmirror configuration to (or --dry-run to print it)")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read MirrorMaker 2's configuration: %w", err)
	}
	in, err := migrate.Parse(filepath.Base(path), data)
	if err != nil {
		return err
	}
	res, err := migrate.Map(in, migrate.Options{Flow: f.flow, GroupID: f.group})
	if err != nil {
		return err
	}
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	for _, n := range res.Notes {
		fmt.Fprintln(stderr, "mm2:", n)
	}
	header := fmt.Sprintf("kmirror configuration written by `kmirror migrate mm2` from %s (flow %s->%s).\n"+
		"Each setting says the MirrorMaker 2 setting it came from; every other key has kmirror's default\n"+
		"(configs/kmirror.yaml).", filepath.Base(path), res.Source, res.Target)
	body, err := res.YAML(header)
	if err != nil {
		return err
	}
	cfg, err := migrate.Validate(body)
	if err != nil {
		return err
	}
	if f.dryRun {
		fmt.Fprintf(stdout, "# --dry-run: this configuration is not written\n%s\n", body)
	} else {
		if err := os.WriteFile(f.out, body, 0o600); err != nil {
			return fmt.Errorf("write the kmirror configuration: %w", err)
		}
		fmt.Fprintf(stdout, "wrote %s (flow %s->%s, group %q, replication_policy %s); %d MirrorMaker 2 setting(s) without an exact equivalent listed on stderr\n",
			f.out, res.Source, res.Target, cfg.Consumer.GroupID, cfg.Topics.ReplicationPolicy, len(res.Notes))
	}
	if f.configOnly {
		return nil
	}
	topic := res.OffsetsTopic
	if f.offsetsTopic != "" {
		topic = f.offsetsTopic
	}
	ctx, cancel := context.WithTimeoutCause(cmd.Context(), f.timeout, fmt.Errorf("--timeout %s", f.timeout))
	defer cancel()
	return seedFromMM2(ctx, stdout, cfg, res.Source, topic, f)
}

// seedFromMM2 reads MirrorMaker 2's positions on the target and seeds kmirror's group on the source.
func seedFromMM2(ctx context.Context, out io.Writer, cfg *config.Config, alias, topic string, f migrateFlags) error {
	src, err := openClient(ctx, "source", cfg.Source)
	if err != nil {
		return err
	}
	defer src.Close()
	tgt, err := openClient(ctx, "target", cfg.Target)
	if err != nil {
		return err
	}
	defer tgt.Close()
	latest, err := migrate.ReadOffsetsTopic(ctx, tgt, topic)
	if err != nil {
		return err
	}
	positions, err := latest.Positions(alias, f.connector)
	if err != nil {
		return err
	}
	if len(positions) == 0 {
		return fmt.Errorf("offsets topic %q on the target holds no MirrorSourceConnector position for source cluster %q (connectors with its positions: %v); "+
			"nothing was seeded: check --offsets-topic and --connector", topic, alias, latest.Connectors(alias))
	}
	plan, err := migrate.PlanSeed(ctx, src, tgt, cfg, positions)
	if err != nil {
		return err
	}
	verb := "seeding"
	if f.dryRun {
		verb = "--dry-run: would seed"
	}
	fmt.Fprintf(out, "%s group %q on %s from MirrorMaker 2's positions in %s on %s:\n", verb, plan.Group, cfg.Source.Alias, topic, cfg.Target.Alias)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tTARGET TOPIC\tMM2 LAST COPIED\tSEEDED AT\tSOURCE END\tTO COPY\tNOTE")
	for _, r := range plan.Rows {
		copied, seed, todo := "-", "-", "-"
		if r.Seed >= 0 {
			copied, seed, todo = fmt.Sprint(r.Copied), fmt.Sprint(r.Seed), fmt.Sprint(r.End-max(r.Seed, r.Start))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Topic, r.Partition, r.TargetTopic, copied, seed, r.End, todo, r.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range plan.Skipped {
		fmt.Fprintln(out, "not seeded:", s)
	}
	for _, g := range plan.Unread {
		fmt.Fprintf(out, "not checked: positions group %q on the target (not authorised to read it): before switching to delivery.mode exactly_once, "+
			"make sure it holds no position of these topics (kafka-consumer-groups.sh --describe --group %s), which it would resume from instead of the seed\n", g, g)
	}
	if f.dryRun {
		if err := plan.StaleError(); err != nil && !f.force {
			fmt.Fprintf(out, "--dry-run: seeding would be refused without --force: %v\n", err)
		}
		if len(plan.Committed) > 0 && !f.force {
			fmt.Fprintf(out, "--dry-run: group %q already has committed offsets for %d partition(s): seeding would be refused without --force\n", plan.Group, len(plan.Committed))
		}
		return nil
	}
	if err := migrate.Seed(ctx, src, tgt, plan, f.force); err != nil {
		return err
	}
	n := 0
	for _, r := range plan.Rows {
		if r.Seed >= 0 {
			n++
		}
	}
	fmt.Fprintf(out, "seeded group %q: %d partition(s) committed and read back; start kmirror with this configuration\n", plan.Group, n)
	return nil
}

// openClient connects a sarama client to one cluster of cfg, reading committed records only.
func openClient(ctx context.Context, key string, cc config.Cluster) (sarama.Client, error) {
	c, err := cluster.New(key, cc)
	if err != nil {
		return nil, err
	}
	sc := c.Config("migrate")
	sc.Consumer.IsolationLevel = sarama.ReadCommitted
	sc.Consumer.Return.Errors = true
	type result struct {
		cl  sarama.Client
		err error
	}
	done := make(chan result, 1)
	go func() {
		cl, err := sarama.NewClient(c.Bootstrap(), sc)
		done <- result{cl, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("connect to the %s cluster %s (%v): %w", key, cc.Alias, cc.Bootstrap, r.err)
		}
		return r.cl, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.cl != nil {
				r.cl.Close()
			}
		}()
		return nil, fmt.Errorf("connect to the %s cluster %s (%v): %w", key, cc.Alias, cc.Bootstrap, context.Cause(ctx))
	}
}

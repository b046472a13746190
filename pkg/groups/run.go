package groups

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/offsetmap"
)

// Run runs a Round at once and then every interval until ctx ends (it then returns nil). It logs
// what a person would act on, once: a group that fails (again when the error changes, and when it
// recovers), a target group that has members, one whose offsets another client commits, a group
// with positions the offset map cannot translate; and one line whenever a group's target offsets
// advance.
func (s *Syncer) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("group offset sync interval %v: must be > 0", interval)
	}
	l := &problems{log: s.log, last: make(map[string]string)}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		outs, err := s.round(ctx)
		if ctx.Err() != nil {
			return nil
		}
		l.round(outs, err)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// problems remembers which problems Run has logged, so that each is logged when it appears or
// changes, not every round.
type problems struct {
	log  *zap.Logger
	last map[string]string // key (kind and group) → problem last logged
}

// Keys of problems: the listing of groups, and per group.
const (
	problemList    = "list"
	problemFailed  = "failed/"
	problemActive  = "active/"
	problemUnknown = "unknown/"
	problemOthers  = "others/"
)

// note records key's problem this round ("" for none) and says whether it is new (or changed)
// and whether one went away.
func (l *problems) note(key, problem string) (appeared, cleared bool) {
	prev, had := l.last[key]
	switch {
	case problem == "" && had:
		delete(l.last, key)
		return false, true
	case problem != "" && problem != prev:
		l.last[key] = problem
		return true, false
	}
	return false, false
}

func (l *problems) round(outs []outcome, err error) {
	msg := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	switch appeared, cleared := l.note(problemList, msg(err)); {
	case appeared:
		l.log.Warn("group offset sync cannot list the source's consumer groups", zap.Error(err))
	case cleared:
		l.log.Info("group offset sync lists the source's consumer groups again")
	}
	if err != nil {
		return
	}
	seen := make(map[string]bool)
	for _, o := range outs {
		g := zap.String("group", o.group)
		for _, k := range []string{problemFailed, problemActive, problemUnknown, problemOthers} {
			seen[k+o.group] = true
		}
		switch appeared, cleared := l.note(problemFailed+o.group, msg(o.err)); {
		case appeared:
			l.log.Warn("group offset sync failed", g, zap.Error(o.err))
		case cleared:
			l.log.Info("group offset sync works again", g)
		}
		r := o.report
		if r.Group == "" {
			continue // not planned: the rest is unknown
		}
		active := ""
		if r.Active {
			active = "active"
		}
		switch appeared, cleared := l.note(problemActive+o.group, active); {
		case appeared:
			l.log.Warn("target group has members: its offsets are theirs and are not synced", g, zap.String("state", r.TargetState))
		case cleared:
			l.log.Info("target group has no members any more: its offsets are synced", g)
		}
		others := ""
		if r.CommittedByOthers {
			others = "others"
		}
		switch appeared, cleared := l.note(problemOthers+o.group, others); {
		case appeared:
			l.log.Warn("another client commits the target group's offsets: the group offset sync leaves it alone", g,
				zap.String("state", r.TargetState),
				zap.String("why", "its offsets changed since kmirror last wrote them, and the group has no member: "+
					"a reader that assigns partitions itself and commits (Flink, Spark) owns them; `kmirror failover --force` moves them"))
		case cleared:
			l.log.Info("the target group's offsets are kmirror's again: they are synced", g)
		}
		var unknown []PartitionReport
		for _, p := range r.Partitions {
			if p.Status == offsetmap.Unknown {
				unknown = append(unknown, p)
			}
		}
		problem := ""
		if len(unknown) > 0 {
			problem = "unknown"
		}
		switch appeared, cleared := l.note(problemUnknown+o.group, problem); {
		case appeared:
			p := unknown[0]
			l.log.Warn("the offset map cannot translate positions of group: they are not synced", g,
				zap.Int("partitions", len(unknown)), zap.String("topic", p.Topic), zap.Int32("partition", p.Partition),
				zap.Int64("source_offset", p.Source), zap.String("reason", p.Reason))
		case cleared:
			l.log.Info("the offset map translates every position of group again", g)
		}
		if n := r.Committed(); n > 0 {
			l.log.Info("group's target offsets advanced", g, zap.Int("partitions", n))
		}
	}
	for k := range l.last {
		if k != problemList && !seen[k] {
			delete(l.last, k) // the group is gone or no longer matches
		}
	}
}

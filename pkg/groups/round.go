package groups

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// outcome is one group's part of a round.
type outcome struct {
	group  string
	report Report // Group is empty when the plan failed
	err    error
}

// Round plans and applies every matching group, one after the other. One group's failure does
// not stop the others: the error joins every group's, and the reports are those of the groups
// that got as far as a plan.
func (s *Syncer) Round(ctx context.Context) ([]Report, error) {
	outs, err := s.round(ctx)
	var reports []Report
	errs := []error{err}
	for _, o := range outs {
		if o.report.Group != "" {
			reports = append(reports, o.report)
		}
		errs = append(errs, o.err)
	}
	return reports, errors.Join(errs...)
}

func (s *Syncer) round(ctx context.Context) ([]outcome, error) {
	groups, err := s.Matching(ctx)
	if err != nil {
		return nil, err
	}
	outs := make([]outcome, 0, len(groups))
	untranslatable := 0
	for _, g := range groups {
		if ctx.Err() != nil {
			return outs, fmt.Errorf("group offset sync round: %w", ctx.Err())
		}
		o := outcome{group: g}
		o.report, o.err = s.Plan(ctx, g, "")
		if o.err == nil {
			untranslatable += o.report.Untranslatable()
			o.report, o.err = s.Apply(ctx, o.report)
		}
		if o.report.Group != "" && s.written.found(g, o.report.CommittedByOthers) {
			s.obs.CommittedByOthers(g)
		}
		if o.err != nil {
			s.obs.Failed(g, o.err)
		} else {
			s.obs.Synced(g, o.report.Committed())
		}
		outs = append(outs, o)
	}
	s.obs.Round(time.Now(), len(groups), untranslatable)
	return outs, nil
}

package groups

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Failover is the runbook step of moving groups to the target: it plans every group until each
// of their partitions translates exactly (the mirror has caught up with the groups' positions)
// or wait has passed, then applies every group once and returns what was done. progress, when
// set, is told how many partitions are still not translatable after each plan that leaves some.
// Partitions still not translatable when wait ends are reported as such and not committed.
//
// A target group whose committed offsets another client wrote is read again at least one poll
// later before anything is committed (whatever wait says): a reader that commits without joining
// the group (Flink, Spark) shows no member, only offsets that move; if they moved, the group is
// reported committed by another client and left alone (Config.Force commits anyway).
func (s *Syncer) Failover(ctx context.Context, groups []string, topic string, wait, poll time.Duration, progress func(pending int)) ([]Report, error) {
	if len(groups) == 0 {
		return nil, errors.New("failover: name at least one group")
	}
	deadline := time.Now().Add(wait)
	for plans := 1; ; plans++ {
		pending, foreign := 0, false
		for _, g := range groups {
			r, err := s.Plan(ctx, g, topic)
			if err != nil {
				return nil, err
			}
			pending += r.Untranslatable()
			foreign = foreign || r.foreign
		}
		watch := foreign && plans == 1
		if !watch && (pending == 0 || !time.Now().Add(poll).Before(deadline)) {
			break
		}
		if progress != nil && pending > 0 {
			progress(pending)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("failover: waiting for the mirror to reach the groups' positions: %w", ctx.Err())
		case <-time.After(poll):
		}
	}
	reports := make([]Report, 0, len(groups))
	var errs []error
	for _, g := range groups {
		r, err := s.Plan(ctx, g, topic)
		if err == nil {
			r, err = s.Apply(ctx, r)
		}
		if r.Group != "" {
			reports = append(reports, r)
		}
		errs = append(errs, err)
	}
	return reports, errors.Join(errs...)
}

package preflight

import (
	"errors"
	"fmt"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/kmirror/kmirror/pkg/config"
)

// NoMirrorBack refuses to start a flow that would loop with a kmirror running the other way (the
// identity policy without the provenance header): the check validate --connect makes
// (MirrorBack), made by run through the source's admin client src before anything is created or
// copied. A check that cannot be made (no Describe on the reverse flow's offset map) is logged
// and let through, as validate reports it rather than failing the flow.
func NoMirrorBack(cfg *config.Config, src sarama.ClusterAdmin, log *zap.Logger) error {
	if !MayLoop(cfg) {
		return nil
	}
	all, err := src.ListTopics()
	if err != nil {
		log.Warn("could not look for a kmirror copying the other way (list the source's topics); going on", zap.Error(err))
		return nil
	}
	c := MirrorBack(cfg, all, func(topic string, partition int32, ms int64) (int64, error) {
		res, err := src.ListOffsets(map[string]map[int32]int64{topic: {partition: ms}}, nil)
		if err != nil {
			return 0, err
		}
		r := res[topic][partition]
		switch {
		case r == nil:
			return 0, fmt.Errorf("list offsets of %s/%d: no answer for the partition", topic, partition)
		case r.Err != nil && !errors.Is(r.Err, sarama.ErrNoError):
			return 0, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, r.Err)
		}
		return r.Offset, nil
	})
	var loop *LoopError
	switch {
	case errors.As(c.Err, &loop):
		return fmt.Errorf("%w; fix: %s", c.Err, c.Fix)
	case c.Err != nil:
		log.Warn("could not look for a kmirror copying the other way; going on", zap.Error(c.Err), zap.String("hint", c.Fix))
	case c.Detail != "":
		log.Info("looked for a kmirror copying the other way", zap.String("found", c.Detail))
	}
	return nil
}

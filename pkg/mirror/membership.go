package mirror

import (
	"errors"
	"fmt"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// Static membership (consumer.group_instance_id, KIP-345).
//
// A static member keeps its place in the source group across a restart: when it comes back
// within the session timeout with the same instance id, the coordinator hands it the assignment
// it had, in the same generation, and the other members never stop. The price is on the way out:
// a static member sends no LeaveGroup when it stops (pkg/group follows KIP-345), so its partitions are
// nobody's until the session timeout ends. The stop path is unchanged otherwise and still right:
// every claim has drained and committed before the member closes, so whoever owns a partition
// next (the same instance after a restart, or another member after the timeout) starts from the
// last acknowledged record; in exactly-once mode the next owner of a slot fences the last one by
// its transactional id, which is the slot's and not the member's (pkg/slots), so a new member id
// for the same instance changes nothing there.

// staticMember makes the consumer group's client a static member when an instance id is set.
func (m *Mirror) staticMember(c *sarama.Config) {
	c.Consumer.Group.InstanceId = m.cfg.Consumer.GroupInstanceID
}

// leftStatically says, once, at a stop, what happens to the partitions of a static member.
func (m *Mirror) leftStatically() {
	if id := m.cfg.Consumer.GroupInstanceID; id != "" {
		m.log.Info("stopped as a static member: the group keeps this member's partitions for it until consumer.session_timeout; "+
			"a restart with the same consumer.group_instance_id within it resumes them without a rebalance",
			zap.String("group_instance_id", id), zap.Duration("session_timeout", m.cfg.Consumer.SessionTimeout))
	}
}

// fencedInstance turns the coordinator's refusal of this member's instance id (another process
// joined with the same consumer.group_instance_id) into the error the mirror stops with: two
// processes with one id would take the partitions from each other forever.
func (m *Mirror) fencedInstance(err error) error {
	if !errors.Is(err, sarama.ErrFencedInstancedId) {
		return nil
	}
	return fmt.Errorf("consumer group %q: another process joined with consumer.group_instance_id %q and took this member's place "+
		"(give each replica its own id, e.g. ${HOSTNAME}): %w", m.cfg.Consumer.GroupID, m.cfg.Consumer.GroupInstanceID, err)
}

package source

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// A topic deleted and created again under the same name while a session reads it is a new
// incarnation: the same partitions and offsets, other records. sarama's partition consumer names
// topics, not topic IDs, in its fetches; after the deletion its fetch fails, it refreshes the
// topic's metadata and fetches again from the offset it had reached, which in the new
// incarnation is another record, or none yet: the new incarnation's first records would be
// skipped, and the ones after the old position copied before them.
//
// Every such refresh goes through the consumer group's client, which GuardIncarnations wraps.
// Once the refresh is done, the guard reads the topic IDs of the refreshed topics that the
// session claims (Metadata v10 and later carry them: source.version 2.8 or newer) and compares
// them with the IDs the session started with. A topic with another ID fails the refresh, so the
// partition consumer does not fetch (it retries later), and ends the session. The next session's
// Setup finds the committed offset's topic ID (stored in its metadata) is not the topic's
// (start.go) and starts the new incarnation at its log start: no offset of the old incarnation
// is applied to the new one, in either delivery mode (both store the topic ID with the
// position). Records of the old incarnation still in flight are acknowledged and committed, as
// the old incarnation's, before the session ends.
//
// A deletion and re-creation that happen entirely between two fetches of a partition leave no
// failed fetch to refresh on: the next fetch from the old position then finds the new
// incarnation shorter (OFFSET_OUT_OF_RANGE ends the session, and Setup decides as above) unless
// more records than the old position were written to it within that fetch wait.

// GuardIncarnations returns c with its RefreshMetadata checking the topic IDs of the handler's
// claims; recreated is called (to restart the topic's claims: Handler.RestartTopic) when a
// claimed topic has a new ID. The returned client is the fetcher's: closing it closes c.
func GuardIncarnations(c sarama.Client, h *Handler, recreated func(topic string)) sarama.Client {
	return &incarnationClient{Client: c, h: h, recreated: recreated, logged: make(map[string]bool)}
}

// incarnationClient is GuardIncarnations' client.
type incarnationClient struct {
	sarama.Client
	h         *Handler
	recreated func(topic string)

	mu     sync.Mutex
	logged map[string]bool // topic and new ID already logged
}

// RecreatedError says a claimed topic was deleted and created again during the session.
type RecreatedError struct {
	Topic, OldID, NewID string
}

func (e *RecreatedError) Error() string {
	return fmt.Sprintf("source topic %q was deleted and created again during the session (topic ID %s, was %s): "+
		"not fetching from the old incarnation's position; the session ends and the new incarnation is mirrored from its log start",
		e.Topic, e.NewID, e.OldID)
}

// RefreshMetadata refreshes as sarama does, then fails when a claimed topic of the refresh has
// another ID than the session started with (see the comment at the top of this file).
func (c *incarnationClient) RefreshMetadata(topics ...string) error {
	if err := c.Client.RefreshMetadata(topics...); err != nil {
		return err
	}
	err := c.h.sameIncarnations(topics)
	if re := (*RecreatedError)(nil); errors.As(err, &re) {
		c.mu.Lock()
		first := !c.logged[re.Topic+" "+re.NewID]
		c.logged[re.Topic+" "+re.NewID] = true
		c.mu.Unlock()
		if first {
			c.h.cfg.Log.Warn("source topic was deleted and created again while mirrored; ending the session before anything "+
				"is fetched from the old incarnation's position (the new incarnation is mirrored from its log start)",
				zap.String("topic", re.Topic), zap.String("old_topic_id", re.OldID), zap.String("topic_id", re.NewID))
		}
		c.recreated(re.Topic)
	}
	return err
}

// sameIncarnations returns a *RecreatedError when one of topics (all when none is named) that
// the current session claims has another ID than when the session started. Between sessions,
// and for topics whose ID is not known, there is nothing to compare.
func (h *Handler) sameIncarnations(topics []string) error {
	ids := h.topicIDs.Load()
	if h.cfg.Source == nil || ids == nil || !h.Joined() {
		return nil
	}
	seen := *ids
	var check []string
	for t, id := range seen {
		if id != "" && (len(topics) == 0 || slices.Contains(topics, t)) {
			check = append(check, t)
		}
	}
	if len(check) == 0 {
		return nil
	}
	slices.Sort(check)
	now, err := h.cfg.Source.TopicIDs(check)
	if err != nil {
		return fmt.Errorf("check the source topics' IDs before fetching %v: %w", check, err)
	}
	for _, t := range check {
		cur, ok := now[t]
		switch {
		case !ok:
			// The client found the topic, the check did not (another broker, not caught up yet):
			// not fetching until both agree.
			return fmt.Errorf("check the source topic ID of %q before fetching: the topic is not reported yet", t)
		case cur != seen[t]:
			return &RecreatedError{Topic: t, OldID: seen[t], NewID: cur}
		}
	}
	return nil
}

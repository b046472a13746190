package fetch

import "math"

// session is a loop's KIP-227 fetch session with its broker.
//
// The broker keeps, per session, each partition's fetch offset, leader epoch and size limit as
// the client last sent them, and fetches every partition of the session on each request whether
// the request names it or not. So a request must name a partition whenever what the broker holds
// for it is out of date — it is new, or its position moved (after a delivery), or its leader
// epoch or limit changed — and needs to name nothing else: an idle fetch names no partition.
//
// A partition leaves a session only by being named in the request's forgotten list, which
// sarama v1.61.1 cannot encode. So when a partition must stop being fetched from this broker
// (paused, full, removed, moved, failed), the next request is a full one: epoch 0 with the old
// session ID (which the broker closes) naming exactly the partitions to fetch, and the broker
// answers with a new session.
type session struct {
	id    int32 // 0: none (the broker declined one, or none was asked for yet)
	epoch int32 // of the next request; 0 asks for a new session with a full fetch
	// sent is what the broker's session holds per partition, as of the last answered request.
	sent map[TopicPartition]sentPart
}

type sentPart struct {
	offset   int64
	epoch    int32
	maxBytes int32
}

// reset forgets the session: the next request is a full one that opens a new session.
func (s *session) reset() {
	s.id, s.epoch = 0, 0
	clear(s.sent)
}

// plan decides how the next request is made from want, the partitions to fetch now and their
// state: full reports whether it must be a full fetch (every partition of want named), and
// otherwise named is the partitions to name.
func (s *session) plan(want map[TopicPartition]sentPart, sessions bool) (full bool, named []TopicPartition) {
	if !sessions || s.epoch == 0 {
		return true, nil
	}
	for tp := range s.sent {
		if _, ok := want[tp]; !ok {
			// The set shrank: only a new session can drop a partition. Epoch 0 with the old
			// ID asks the broker to close that session and open another.
			s.epoch = 0
			return true, nil
		}
	}
	for tp, w := range want {
		if was, ok := s.sent[tp]; !ok || was != w {
			named = append(named, tp)
		}
	}
	return false, named
}

// answered records a successful answer to a request planned as full (with want) or incremental
// (naming named, whose state is in want), and the session ID the broker gave.
func (s *session) answered(full bool, want map[TopicPartition]sentPart, named []TopicPartition, id int32, sessions bool) {
	if !sessions {
		return
	}
	if full {
		clear(s.sent)
		for tp, w := range want {
			s.sent[tp] = w
		}
		s.id = id
		if id == 0 {
			s.epoch = 0 // the broker declined a session: every request stays full
		} else {
			s.epoch = 1
		}
		return
	}
	for _, tp := range named {
		s.sent[tp] = want[tp]
	}
	if s.epoch == math.MaxInt32 {
		s.epoch = 1 // KIP-227: the epoch wraps to 1, never to 0 (a new session)
	} else {
		s.epoch++
	}
}

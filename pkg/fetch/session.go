package fetch

import "math"

// maxNewPerFetch bounds how many partitions one request adds to a session: a full fetch names at
// most this many, and each incremental fetch after it adds at most this many more, until the
// session holds every partition the loop fetches. A first fetch naming 10,000 partitions asks a
// broker to open 10,000 logs before it answers; on a loaded broker that outlasted the client's
// read timeout, and each retry was as large again.
//
// A request waits for MinBytes no longer than its session has gone without growing (loop.build):
// one that adds partitions to the session, or leaves some for a later step (plan.growing), does
// not wait at all, and the waits lengthen back to MaxWait, each about as long as the time since
// the last growth, while the session stays as it is. The partitions of a start or a rebalance
// reach a loop a few at a time and in steps of maxNewPerFetch, and a request that waited the
// fetch wait of idle partitions (2 s at 10,000 partitions, config.Consumer.FetchWait) held back
// every partition added after it: at 10,000 partitions the last step (9,670 flowing to all)
// took 4.2 s, and 1.0-1.1 s without the wait (docs/benchmarks.md, "Scale"). An idle session
// pays a dozen short requests after each growth.
const maxNewPerFetch = 1000

// session is a loop's KIP-227 fetch session with its broker.
//
// The broker keeps, per session, each partition's fetch offset, leader epoch and size limit as
// the client last sent them, and fetches every partition of the session on each request whether
// the request names it or not. So a request must name a partition whenever what the broker holds
// for it is out of date — it is new, or its position moved (after a delivery), or its leader
// epoch or limit changed — and needs to name nothing else: an idle fetch names no partition.
//
// A partition leaves a session by being named in the request's forgotten list (paused, full,
// removed, moved, failed). Where that list cannot be sent (setForgotten), the next request is a
// full one instead: epoch 0 with the old session ID (which the broker closes) naming the
// partitions to fetch, and the broker answers with a new session.
type session struct {
	id    int32 // 0: none (the broker declined one, or none was asked for yet)
	epoch int32 // of the next request; 0 asks for a new session with a full fetch
	// declined: the broker answered the last full fetch without a session (its session cache
	// is full): until it gives one, each request is full and names every partition, since
	// nothing is fetched that a sessionless request does not name.
	declined bool
	// sent is what the broker's session holds per partition, as of the last answered request.
	sent map[TopicPartition]sentPart
}

type sentPart struct {
	offset   int64
	epoch    int32
	maxBytes int32
}

// plan is how one request is made.
type plan struct {
	full      bool             // a new session (or none): named is all the broker fetches
	named     []TopicPartition // partitions named, with their state in the request's want
	forgotten []TopicPartition // partitions the broker drops from the session (incremental only)
	// growing: the request adds partitions to a session, or leaves some out of it for a later
	// step (maxNewPerFetch): it does not wait. Never set without a session (each request then
	// names every partition, and an idle loop must still wait).
	growing bool
}

// reset forgets the session: the next request is a full one that opens a new session.
func (s *session) reset() {
	s.id, s.epoch = 0, 0
	clear(s.sent)
}

// plan decides how the next request is made from want, the partitions to fetch now and their
// state. sessions says whether the broker has fetch sessions at all (without, every request
// names every partition); canForget whether a request can carry a forgotten list.
func (s *session) plan(want map[TopicPartition]sentPart, sessions, canForget bool) plan {
	if !sessions {
		p := plan{full: true}
		for tp := range want {
			p.named = append(p.named, tp)
		}
		return p
	}
	if s.epoch != 0 {
		var p plan
		for tp := range s.sent {
			if _, ok := want[tp]; !ok {
				p.forgotten = append(p.forgotten, tp)
			}
		}
		if len(p.forgotten) == 0 || canForget {
			added := 0
			for tp, w := range want {
				was, ok := s.sent[tp]
				switch {
				case ok && was == w:
				case ok:
					p.named = append(p.named, tp)
				case added < maxNewPerFetch:
					p.named = append(p.named, tp)
					added++
				default:
					p.growing = true // left for a later step
				}
			}
			p.growing = p.growing || added > 0
			return p
		}
		// The set shrank and the request cannot say so: only a new session drops a partition.
		// Epoch 0 with the old ID asks the broker to close that session and open another.
		s.epoch = 0
	}
	p := plan{full: true}
	for tp := range want {
		if len(p.named) == maxNewPerFetch && !s.declined {
			break
		}
		p.named = append(p.named, tp)
	}
	p.growing = !s.declined // a new session: every partition named is new to it
	return p
}

// answered records a successful answer to a request made by p (the state of its named
// partitions in want), and the session ID the broker gave.
func (s *session) answered(p plan, want map[TopicPartition]sentPart, id int32, sessions bool) {
	if !sessions {
		return
	}
	if p.full {
		clear(s.sent)
		for _, tp := range p.named {
			s.sent[tp] = want[tp]
		}
		s.id, s.declined = id, id == 0
		if id == 0 {
			s.epoch = 0 // the broker declined a session: every request stays full
		} else {
			s.epoch = 1
		}
		return
	}
	for _, tp := range p.named {
		s.sent[tp] = want[tp]
	}
	for _, tp := range p.forgotten {
		delete(s.sent, tp)
	}
	if s.epoch == math.MaxInt32 {
		s.epoch = 1 // KIP-227: the epoch wraps to 1, never to 0 (a new session)
	} else {
		s.epoch++
	}
}

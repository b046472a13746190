package fetch

import "sync/atomic"

// Stats are counters since New, for the owner's metrics (the package registers none itself).
type Stats struct {
	// Fetches is the number of fetch requests answered; FullFetches those that opened a new
	// session (or had none); the rest were incremental.
	Fetches, FullFetches int64
	// PartitionsNamed is the number of partitions named, summed over all requests: with
	// sessions it grows with the partitions that received data, not with the partitions held.
	PartitionsNamed int64
	// PartitionsForgotten is the number of partitions dropped from a session by a forgotten
	// list, summed over all requests (each pause, removal or move of a partition counts one).
	PartitionsForgotten int64
	// SessionErrors counts FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH and other
	// refusals of a whole fetch; BrokerErrors fetches that got no answer.
	SessionErrors, BrokerErrors int64
	// Batches, Records and Bytes are what was delivered (Bytes: keys, values and headers).
	Batches, Records, Bytes int64
	// HeldBytes is what the sinks hold back now (Config.MaxHeldBytes); HeldWaits counts the
	// times a loop found it at the bound and sent no fetch.
	HeldBytes, HeldWaits int64
}

// stats is the live form of Stats.
type stats struct {
	fetches, fullFetches, named, forgotten, sessionErrors, brokerErrors, batches, records, bytes atomic.Int64
	held, heldWaits                                                                              atomic.Int64
}

// Stats returns the counters now.
func (f *Fetcher) Stats() Stats {
	s := &f.stats
	return Stats{
		Fetches: s.fetches.Load(), FullFetches: s.fullFetches.Load(), PartitionsNamed: s.named.Load(), PartitionsForgotten: s.forgotten.Load(),
		SessionErrors: s.sessionErrors.Load(), BrokerErrors: s.brokerErrors.Load(),
		Batches: s.batches.Load(), Records: s.records.Load(), Bytes: s.bytes.Load(),
		HeldBytes: s.held.Load(), HeldWaits: s.heldWaits.Load(),
	}
}

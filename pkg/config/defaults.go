package config

import "time"

// Default returns the configuration kmirror runs with when a key is not set. The values are
// production defaults; configs/kmirror.yaml repeats them with their meaning.
func Default() Config {
	cluster := func(alias string, bootstrap ...string) Cluster {
		return Cluster{
			Alias:           alias,
			Bootstrap:       bootstrap,
			Version:         "3.6.0",
			ClientID:        "kmirror",
			DialTimeout:     10 * time.Second,
			ReadTimeout:     30 * time.Second,
			WriteTimeout:    30 * time.Second,
			MetadataRefresh: 30 * time.Second,
		}
	}
	return Config{
		Source: cluster("europe"),
		Target: cluster("us"),
		Topics: Topics{
			Include:           []string{".*"},
			Exclude:           []string{},
			RefreshInterval:   30 * time.Second,
			ReplicationPolicy: PolicyIdentity,
			Create:            true,
			ReplicationFactor: 3,
			SyncConfigs: []string{
				"cleanup.policy", "retention.ms", "retention.bytes", "max.message.bytes",
				"compression.type", "min.insync.replicas", "segment.bytes",
				"min.compaction.lag.ms", "max.compaction.lag.ms", "delete.retention.ms",
				"message.timestamp.after.max.ms", "message.timestamp.before.max.ms",
			},
			SyncExistingConfigs: true,
			SyncACLs:            false,
		},
		Consumer: Consumer{
			GroupID:                    "kmirror",
			InitialOffset:              "oldest",
			IsolationLevel:             "read_committed",
			RebalanceStrategy:          "sticky",
			SessionTimeout:             45 * time.Second,
			HeartbeatInterval:          3 * time.Second,
			RebalanceTimeout:           5 * time.Minute,
			FetchMaxBytes:              50 << 20,
			FetchPartitionBytes:        256 << 10,
			FetchMinBytes:              64 << 10,
			FetchMaxWait:               10 * time.Millisecond,
			FetchWaitPerPartition:      200 * time.Microsecond,
			DistantRTT:                 10 * time.Millisecond,
			DistantFetchPartitionBytes: 4 << 20,
			MaxHeldBytes:               128 << 20,
			SourceLossPolicy:           LossFail,
		},
		Ring: Ring{
			Workers:           8,
			InboxRecords:      8192,
			InboxBytes:        8 << 20,
			PartitionInFlight: 16384,
		},
		Producer: Producer{
			BatchBytes:      1 << 20,
			BatchRecords:    10000,
			Linger:          5 * time.Millisecond,
			DistantLinger:   20 * time.Millisecond,
			Compression:     "none",
			MaxMessageBytes: 1048588,
			DeliveryTimeout: 2 * time.Minute,
			RetryBackoff:    100 * time.Millisecond,
			RefusedPolicy:   RefusedFail,
		},
		Commit: Commit{Interval: 5 * time.Second},
		Delivery: Delivery{
			Mode: AtLeastOnce, Slots: 16, PositionsRefresh: time.Hour,
			Transaction: Transaction{MaxRecords: 10000, MaxBytes: 8 << 20, MaxAge: 100 * time.Millisecond, BacklogMaxAge: 500 * time.Millisecond},
		},
		OffsetMap:  OffsetMap{Enabled: true, FlushInterval: time.Second},
		Groups:     Groups{Include: []string{}, Exclude: []string{}, SyncInterval: 10 * time.Second},
		Heartbeats: Heartbeats{Enabled: true, Topic: "kmirror.heartbeats", Interval: time.Second},
		Shutdown:   Shutdown{Timeout: 30 * time.Second},
		Log:        Log{Level: "info", Format: "console"},
		Runtime:    Runtime{GCPercent: 200},
		Telemetry: Telemetry{
			Listen:     ":9464",
			StallAfter: time.Minute,
			Tracing: Tracing{
				Protocol:    "grpc",
				Insecure:    true,
				SampleRatio: 0.01,
			},
		},
	}
}

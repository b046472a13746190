package group

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/kmirror/kmirror/pkg/slots"
)

func owning(owned Partitions) sarama.ConsumerGroupMemberMetadata {
	meta := sarama.ConsumerGroupMemberMetadata{Version: 1, Topics: []string{topic}}
	for t, ps := range owned {
		meta.OwnedPartitions = append(meta.OwnedPartitions, &sarama.OwnedPartition{Topic: t, Partitions: ps})
	}
	return meta
}

// slotParts returns the partitions of topic (0..n-1) in slot sl of nslots.
func slotParts(n int32, sl, nslots int) []int32 {
	var out []int32
	for p := range n {
		if slots.Of(topic, p, nslots) == sl {
			out = append(out, p)
		}
	}
	return out
}

// TestWithhold: the leader never hands a member a partition another member announced it owns,
// nor a partition of a slot another member owns part of (unless it owns that partition itself);
// a partition two members claim goes to neither.
func TestWithhold(t *testing.T) {
	const nslots = 4
	s0, s1 := slotParts(8, 0, nslots), slotParts(8, 1, nslots)
	if len(s0) != 2 || len(s1) != 2 {
		t.Fatalf("slots 0 and 1 hold %v and %v, want 2 partitions each", s0, s1)
	}
	tests := []struct {
		name  string
		owned map[string]Partitions
		plan  map[string]Partitions
		want  map[string]Partitions
	}{{
		name:  "a partition moving to b is withheld from b while a owns it",
		owned: map[string]Partitions{"a": {topic: s0}, "b": {}},
		plan:  map[string]Partitions{"a": {}, "b": {topic: s0}},
		want:  map[string]Partitions{"a": {}, "b": {}},
	}, {
		name:  "what stays stays, new partitions nobody owns are handed out",
		owned: map[string]Partitions{"a": {topic: s0}, "b": {}},
		plan:  map[string]Partitions{"a": {topic: s0}, "b": {topic: s1}},
		want:  map[string]Partitions{"a": {topic: s0}, "b": {topic: s1}},
	}, {
		name:  "a slot moves whole: its unowned partition waits for the owned one",
		owned: map[string]Partitions{"a": {topic: s0[:1]}, "b": {}},
		plan:  map[string]Partitions{"a": {}, "b": {topic: s0}},
		want:  map[string]Partitions{"a": {}, "b": {}},
	}, {
		name:  "a member keeps its part of a slot split by the plan",
		owned: map[string]Partitions{"a": {topic: s0[:1]}, "b": {topic: s0[1:]}},
		plan:  map[string]Partitions{"a": {topic: s0[:1]}, "b": {topic: s0[1:]}},
		want:  map[string]Partitions{"a": {topic: s0[:1]}, "b": {topic: s0[1:]}},
	}, {
		name:  "a partition claimed twice goes to neither",
		owned: map[string]Partitions{"a": {topic: s0}, "b": {topic: s0[:1]}},
		plan:  map[string]Partitions{"a": {topic: s0}, "b": {}},
		want:  map[string]Partitions{"a": {topic: s0[1:]}, "b": {}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			members := make(map[string]sarama.ConsumerGroupMemberMetadata)
			for id, o := range tc.owned {
				members[id] = owning(o)
			}
			p := make(sarama.BalanceStrategyPlan)
			for id, ps := range tc.plan {
				p[id] = ps.Clone()
			}
			withhold(p, members, nslots)
			for id, want := range tc.want {
				if got := Partitions(p[id]); !equal(got, want) {
					t.Errorf("%s gets %v, want %v", id, got, want)
				}
			}
		})
	}
}

// TestSubscriptionAnnouncesWhatIsOwned: the JoinGroup metadata names the owned partitions
// (KIP-429) and carries slot user data the strategy reads back; owning nothing announces
// generation -1 whatever the generation, so that metadata stays the same while nothing is owned.
func TestSubscriptionAnnouncesWhatIsOwned(t *testing.T) {
	s, err := slots.NewStrategy(slots.Config{Slots: 4})
	if err != nil {
		t.Fatal(err)
	}
	meta, err := subscription(s, "m", []string{topic}, Partitions{topic: {1, 2}}, 7)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Version < 1 || len(meta.OwnedPartitions) != 1 || meta.OwnedPartitions[0].Topic != topic || len(meta.OwnedPartitions[0].Partitions) != 2 {
		t.Errorf("metadata %+v, want version ≥ 1 owning %s [1 2]", meta, topic)
	}
	want, _ := s.AssignmentData("m", map[string][]int32{topic: {1, 2}}, 7)
	if string(meta.UserData) != string(want) {
		t.Errorf("user data %x, want the strategy's %x", meta.UserData, want)
	}
	a, _ := subscription(s, "m", []string{topic}, Partitions{}, 3)
	b, _ := subscription(s, "m", []string{topic}, nil, 9)
	if string(a.UserData) != string(b.UserData) || len(a.OwnedPartitions)+len(b.OwnedPartitions) != 0 {
		t.Errorf("owning nothing: %+v and %+v differ", a, b)
	}
}

// TestNewRefusesBadConfig: every required field and bound is named.
func TestNewRefusesBadConfig(t *testing.T) {
	s, err := slots.NewStrategy(slots.Config{Slots: 4})
	if err != nil {
		t.Fatal(err)
	}
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_1_0_0
	cl := configOnly{conf: sc}
	good := Config{Client: cl, Group: "g", Topics: []string{topic}, Strategy: s, Handler: newLedger(t).handler("x")}
	if _, err := New(good); err != nil {
		t.Fatalf("New(good) = %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"Client":            func(c *Config) { c.Client = nil },
		"Group":             func(c *Config) { c.Group = "" },
		"Topics":            func(c *Config) { c.Topics = nil },
		"Topics[1]":         func(c *Config) { c.Topics = []string{topic, ""} },
		"Strategy":          func(c *Config) { c.Strategy = nil },
		"Handler":           func(c *Config) { c.Handler = nil },
		"HeartbeatInterval": func(c *Config) { c.HeartbeatInterval = time.Minute },
		"InstanceID":        func(c *Config) { c.InstanceID = "i" }, // Kafka 2.1 has no static members
		"RebalanceTimeout":  func(c *Config) { c.RebalanceTimeout = 1000 * time.Hour },
	} {
		c := good
		mutate(&c)
		_, err := New(c)
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: New = %v, want ErrConfig", name, err)
			continue
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %q does not name the field", name, err)
		}
	}
}

// configOnly is a sarama.Client whose Config is all New reads.
type configOnly struct {
	sarama.Client
	conf *sarama.Config
}

func (c configOnly) Config() *sarama.Config { return c.conf }

package fetch

import (
	"reflect"
	"unsafe"

	"github.com/IBM/sarama"
)

// setForgotten puts tps in req's forgotten list (KIP-227: in an incremental fetch, the
// partitions the broker drops from the session) and reports whether it could.
//
// sarama v1.61.1 encodes the list (FetchRequest.encode, version 7 and later) but only its
// decoder fills it: the field, forgotten map[string][]int32, is unexported and has no setter.
// Without it every shrink of a session (a partition paused by a full sink, removed, moved) would
// cost a full fetch naming every partition the loop fetches, which at thousands of partitions is
// a request the broker may not answer in time, again and again. So the field is set through
// reflect, and only when it is there with exactly that type: a sarama that renamed or retyped it
// makes this report false, and the loop falls back to a new session with a full fetch (correct,
// only dearer). TestIdleFetchesNameNoPartition reads the forgotten list as a broker decodes it
// (kfake, franz-go's decoder), so a sarama upgrade that breaks this fails that test.
func setForgotten(req *sarama.FetchRequest, tps []TopicPartition) bool {
	if req.Version < 7 {
		return false
	}
	field := reflect.ValueOf(req).Elem().FieldByName("forgotten")
	want := reflect.TypeFor[map[string][]int32]()
	if !field.IsValid() || field.Type() != want {
		return false
	}
	m := make(map[string][]int32, len(tps))
	for _, tp := range tps {
		m[tp.Topic] = append(m[tp.Topic], tp.Partition)
	}
	// The field is addressable (req is a pointer); NewAt lifts the read-only flag reflect puts
	// on unexported fields.
	reflect.NewAt(want, unsafe.Pointer(field.UnsafeAddr())).Elem().Set(reflect.ValueOf(m))
	return true
}

package offsets

import "testing"

// TestMarksKeepAPositionMarkedFurtherDuringACommit: a commit settles the positions it sent; a
// partition marked further while it was under way stays pending with its newer position.
func TestMarksKeepAPositionMarkedFurtherDuringACommit(t *testing.T) {
	var m Marks
	m.Mark("orders", 0, 10)
	m.Mark("orders", 1, 20)
	m.Mark("orders", 0, 11) // the latest mark of a partition wins
	sent := m.Snapshot()
	if len(sent) != 2 {
		t.Fatalf("snapshot %v, want one mark per partition", sent)
	}
	m.Mark("orders", 1, 25) // marked further while the commit is under way
	m.Done(sent...)
	left := m.Snapshot()
	if m.Pending() != 1 || len(left) != 1 || left[0] != (Mark{"orders", 1, 25}) {
		t.Fatalf("after the commit: %v pending, want orders/1 at 25 alone", left)
	}
}

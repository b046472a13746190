package source

import "testing"

func TestDecideWhereAClaimStarts(t *testing.T) {
	b := Bounds{Start: 100, End: 200}
	meta := commitMetadata("id-1")
	cases := []struct {
		name   string
		c      Committed
		id     string
		newest bool
		kind   startKind
		offset int64
	}{
		{"no commit, oldest", Committed{Offset: -1}, "id-1", false, startInitial, 100},
		{"no commit, newest", Committed{Offset: -1}, "id-1", true, startInitial, 200},
		{"committed inside the log", Committed{Offset: 150, Metadata: meta}, "id-1", false, startCommitted, 150},
		{"committed at the log end", Committed{Offset: 200, Metadata: meta}, "id-1", false, startCommitted, 200},
		{"committed at the log start", Committed{Offset: 100, Metadata: meta}, "id-1", false, startCommitted, 100},
		{"committed below the log start", Committed{Offset: 40, Metadata: meta}, "id-1", true, startLost, 100},
		{"committed past the log end", Committed{Offset: 250, Metadata: meta}, "id-1", false, startTruncated, 200},
		{"another incarnation", Committed{Offset: 150, Metadata: commitMetadata("id-0")}, "id-1", true, startRecreated, 100},
		{"another incarnation below its start", Committed{Offset: 40, Metadata: commitMetadata("id-0")}, "id-1", false, startRecreated, 100},
		{"commit without an ID", Committed{Offset: 150}, "id-1", false, startCommitted, 150},
		{"cluster without IDs", Committed{Offset: 150, Metadata: meta}, "", false, startCommitted, 150},
		{"someone else's metadata", Committed{Offset: 150, Metadata: "app data"}, "id-1", false, startCommitted, 150},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := decide(tc.c, b, tc.id, tc.newest)
			if st.kind != tc.kind || st.offset != tc.offset {
				t.Fatalf("decide = kind %d offset %d, want kind %d offset %d", st.kind, st.offset, tc.kind, tc.offset)
			}
		})
	}
}

func TestCommitMetadataRoundTrips(t *testing.T) {
	if got := topicIDOf(commitMetadata("AbC_-1")); got != "AbC_-1" {
		t.Fatalf("topic ID %q", got)
	}
	if commitMetadata("") != "" || topicIDOf("") != "" {
		t.Fatal("no ID must mean no metadata")
	}
}

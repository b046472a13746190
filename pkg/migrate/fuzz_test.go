package migrate

import "testing"

// FuzzParseAndMap feeds arbitrary files to Parse and Map: either may refuse the input, neither may
// panic, and a mapping that succeeds renders.
func FuzzParseAndMap(f *testing.F) {
	for _, s := range []string{dedicated, strimziV1, strimziV1beta2, "clusters = a, b\na->b.enabled = true\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		res, err := Map(in, Options{})
		if err != nil {
			return
		}
		if _, err := res.YAML("fuzz"); err != nil {
			t.Fatalf("a mapped configuration does not render: %v", err)
		}
	})
}

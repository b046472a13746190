package reference_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/kmirror/kmirror/pkg/config"
	"github.com/kmirror/kmirror/pkg/config/reference"
)

const root = "../../.."

// TestGeneratedFilesAreCurrent fails when docs/configuration.md, docs/kmirror.schema.json or
// docs_gen.go differ from what the generator makes of pkg/config now: a setting, default, tag
// or doc comment changed without `go generate ./pkg/config`.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	files, err := reference.Files(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range files {
			if !yield(k) {
				return
			}
		}
	}) {
		have, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Errorf("%s: %v (run go generate ./pkg/config)", name, err)
			continue
		}
		if want := files[name]; !bytes.Equal(have, want) {
			t.Errorf("%s is out of date with pkg/config (run go generate ./pkg/config); first difference: %s",
				name, firstDiff(have, want))
		}
	}
}

func firstDiff(have, want []byte) string {
	h, w := strings.Split(string(have), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(h), len(w)) {
		var hl, wl string
		if i < len(h) {
			hl = h[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if hl != wl {
			return fmt.Sprintf("line %d: committed %q, generated %q", i+1, hl, wl)
		}
	}
	return "none"
}

// keys lists every setting's key in order.
func keys(groups []reference.Group) []string {
	var out []string
	for _, g := range groups {
		for _, s := range g.Settings {
			out = append(out, s.Key)
		}
		out = append(out, keys(g.Groups)...)
	}
	return out
}

func settings(groups []reference.Group) []reference.Setting {
	var out []reference.Setting
	for _, g := range groups {
		out = append(out, g.Settings...)
		out = append(out, settings(g.Groups)...)
	}
	return out
}

// TestEverySettingIsDescribed compares the reference's keys with the settings Load knows
// (Effective lists every leaf of Config), so none is left out of the docs or the schema.
func TestEverySettingIsDescribed(t *testing.T) {
	secs, err := reference.Sections(reference.Embedded)
	if err != nil {
		t.Fatal(err)
	}
	def := config.Default()
	var want []string
	for _, line := range def.Effective() {
		key, _, _ := strings.Cut(line, ":")
		want = append(want, key)
	}
	got := keys(secs)
	if !slices.Equal(got, want) {
		t.Fatalf("reference keys differ from Config's:\n got %v\nwant %v", got, want)
	}
	if len(secs) != 15 {
		t.Errorf("%d sections, want 15", len(secs))
	}
	for _, s := range settings(secs) {
		if s.Doc == "" || s.Kind == "" || !strings.HasPrefix(s.Env, "KMIRROR_") {
			t.Errorf("%s: incomplete: %+v", s.Key, s)
		}
	}
}

// TestUndocumentedSettingIsAnError: a field without a doc comment stops the generator, naming
// the setting.
func TestUndocumentedSettingIsAnError(t *testing.T) {
	docs := reference.Docs{}
	for k, v := range reference.Embedded {
		docs[k] = v
	}
	delete(docs, "Producer.Linger")
	_, err := reference.Sections(docs)
	if err == nil || !strings.Contains(err.Error(), "producer.linger (Producer.Linger)") {
		t.Fatalf("err = %v, want one naming producer.linger", err)
	}
}

// TestEnumsAreWhatValidationAccepts loads each value an enum tag lists, and one outside the
// list, through config.Load: every listed value passes the key's validation and the other
// fails it, so the schema's enums cannot drift from validate.go.
func TestEnumsAreWhatValidationAccepts(t *testing.T) {
	secs, err := reference.Sections(reference.Embedded)
	if err != nil {
		t.Fatal(err)
	}
	minimal := filepath.Join(root, "configs", "minimal.yaml")
	// The tracing protocol is checked only when tracing is on.
	base := []string{"telemetry.tracing.endpoint=localhost:4317"}
	n := 0
	for _, s := range settings(secs) {
		if s.Enum == nil {
			continue
		}
		n++
		for _, v := range s.Enum {
			_, err := config.Load(minimal, append(base, s.Key+"="+v))
			if err != nil && strings.Contains(err.Error(), s.Key+":") {
				t.Errorf("%s=%q is in the schema's enum but validation refuses it: %v", s.Key, v, err)
			}
		}
		_, err := config.Load(minimal, append(base, s.Key+"=not-a-value"))
		if err == nil || !strings.Contains(err.Error(), s.Key+":") {
			t.Errorf("%s=not-a-value: err = %v, want validation to refuse it (the enum tag lists values validation does not restrict)", s.Key, err)
		}
	}
	if n < 12 {
		t.Errorf("%d settings with an enum, want 12 or more", n)
	}
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "docs", "kmirror.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource("kmirror.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("kmirror.schema.json")
	if err != nil {
		t.Fatalf("compile docs/kmirror.schema.json: %v", err)
	}
	return sch
}

// instance reads YAML as the JSON value a schema validator expects.
func instance(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if v == nil {
		v = map[string]any{}
	}
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSchemaAcceptsTheShippedConfigs validates every configs/**/*.yaml and the generated
// defaults against the schema; each is also one config.Load accepts.
func TestSchemaAcceptsTheShippedConfigs(t *testing.T) {
	sch := compileSchema(t)
	paths, _ := filepath.Glob(filepath.Join(root, "configs", "*.yaml"))
	more, _ := filepath.Glob(filepath.Join(root, "configs", "*", "*.yaml"))
	paths = append(paths, more...)
	if !slices.Contains(paths, filepath.Join(root, "configs", "minimal.yaml")) || len(paths) < 3 {
		t.Fatalf("configs found: %v, want configs/minimal.yaml, configs/kmirror.yaml and more", paths)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(instance(t, data)); err != nil {
			t.Errorf("%s does not match the schema: %v", p, err)
		}
		if _, err := config.Load(p, nil); err != nil {
			t.Errorf("%s: config.Load: %v", p, err)
		}
	}
	secs, err := reference.Sections(reference.Embedded)
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := reference.DefaultsYAML(secs)
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(instance(t, defaults)); err != nil {
		t.Errorf("kmirror config defaults does not match the schema: %v", err)
	}
}

// TestSchemaRefusesWhatLoadRefuses: a misspelt key (at any depth), a value outside an enum and a
// duration without a unit are flagged by the schema, as config.Load refuses them.
func TestSchemaRefusesWhatLoadRefuses(t *testing.T) {
	sch := compileSchema(t)
	minimal, err := os.ReadFile(filepath.Join(root, "configs", "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, extra, where string }{
		{"misspelt key", "producer:\n  compresion: zstd\n", "compresion"},
		{"misspelt nested key", "delivery:\n  transaction:\n    max_recods: 10\n", "max_recods"},
		{"misspelt section", "consumr:\n  group_id: g\n", "consumr"},
		{"value outside the enum", "producer:\n  compression: brotli\n", "compression"},
		{"duration without a unit", "commit:\n  interval: 5\n", "interval"},
		{"duration as a bare number string", "commit:\n  interval: \"5\"\n", "interval"},
		{"wrong type", "ring:\n  workers: many\n", "workers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := append(append([]byte{}, minimal...), tc.extra...)
			err := sch.Validate(instance(t, data))
			if err == nil || !strings.Contains(fmt.Sprintf("%v", err), tc.where) {
				t.Errorf("schema: err = %v, want one naming %q", err, tc.where)
			}
			p := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := config.Load(p, nil); err == nil {
				t.Errorf("config.Load accepts what the schema refuses")
			}
		})
	}
}

// TestDefaultsYAMLLoadsAsTheDefaults: `kmirror config defaults`, with the two bootstraps set,
// loads into exactly config.Default.
func TestDefaultsYAMLLoadsAsTheDefaults(t *testing.T) {
	secs, err := reference.Sections(reference.Embedded)
	if err != nil {
		t.Fatal(err)
	}
	data, err := reference.DefaultsYAML(secs)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "defaults.yaml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(p, []string{"source.bootstrap=a:9092", "target.bootstrap=b:9092"})
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.Source.Bootstrap = []string{"a:9092"}
	want.Target.Bootstrap = []string{"b:9092"}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("defaults YAML loads as\n%v\nwant\n%v", got.Effective(), want.Effective())
	}
}

// Package reference describes every kmirror setting from the code: the config.Config type
// (mapstructure, kafka and enum struct tags), config.Default (the defaults) and the doc comments
// of pkg/config (read with go/ast by the generator, kept in docs_gen.go for the binary). From
// that one description it renders docs/configuration.md, docs/kmirror.schema.json and the
// default configuration as commented YAML.
//
// Invariant: nothing here repeats a setting, a default or an explanation by hand; a setting
// added to config.Config appears in every rendering once `go generate ./pkg/config` has run,
// and a setting without a doc comment is an error, not a blank line.
package reference

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/kmirror/kmirror/pkg/config"
)

// Docs maps "Type" and "Type.Field" (Go names in package config) to their doc comment text.
type Docs map[string]string

// Kind is how a setting is written in YAML.
type Kind string

// The kinds of setting.
const (
	String   Kind = "string"
	Bool     Kind = "boolean"
	Integer  Kind = "integer"
	Number   Kind = "number"
	Duration Kind = "duration"
	List     Kind = "list of strings"
)

// Setting is one leaf of the configuration.
type Setting struct {
	Key     string   // YAML path: "producer.compression"
	Kind    Kind     // how it is written
	Default any      // the default, as written in YAML (durations as strings such as "5s")
	Env     string   // the environment variable that overrides it
	Kafka   string   // the Kafka property it maps to, if any
	Enum    []string // the values validation accepts, if restricted
	Doc     string   // what it does, with Go field names replaced by YAML keys in backticks
}

// Group is a section (a top-level key) or a nested group of settings (source.tls).
type Group struct {
	Key      string
	Doc      string
	Settings []Setting
	Groups   []Group
}

// Count returns the number of settings in g and its nested groups.
func (g Group) Count() int {
	n := len(g.Settings)
	for _, sub := range g.Groups {
		n += sub.Count()
	}
	return n
}

// Sections describes every section of config.Config in declaration order, with docs for the
// text. It fails naming each setting or section that has no doc comment.
func Sections(docs Docs) ([]Group, error) {
	var missing []string
	def := reflect.ValueOf(config.Default())
	t := def.Type()
	var out []Group
	for i := range t.NumField() {
		f := t.Field(i)
		key := f.Tag.Get("mapstructure")
		doc := docText(docs[t.Name()+"."+f.Name], t)
		if doc == "" {
			missing = append(missing, key+" (Config."+f.Name+")")
		}
		g := describe(key, doc, def.Field(i), docs, &missing)
		out = append(out, g)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no doc comment for %s: write one on the field in pkg/config (it is the reference text)",
			strings.Join(missing, ", "))
	}
	return out, nil
}

// describe walks the struct v found at key.
func describe(key, doc string, v reflect.Value, docs Docs, missing *[]string) Group {
	t := v.Type()
	g := Group{Key: key, Doc: doc}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		path := key + "." + tag
		fdoc := docText(docs[t.Name()+"."+f.Name], t)
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
			// A nested group reads best with its type's doc, which says what the group is for.
			gdoc := docText(docs[f.Type.Name()], f.Type)
			if gdoc == "" {
				gdoc = fdoc
			}
			if gdoc == "" {
				*missing = append(*missing, path+" ("+t.Name()+"."+f.Name+")")
			}
			g.Groups = append(g.Groups, describe(path, gdoc, fv, docs, missing))
			continue
		}
		if fdoc == "" {
			*missing = append(*missing, path+" ("+t.Name()+"."+f.Name+")")
		}
		s := Setting{
			Key:   path,
			Kind:  kindOf(f.Type),
			Env:   config.EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_")),
			Kafka: f.Tag.Get("kafka"),
			Doc:   fdoc,
		}
		if e, ok := f.Tag.Lookup("enum"); ok {
			s.Enum = strings.Split(e, ",")
		}
		s.Default = yamlValue(fv)
		g.Settings = append(g.Settings, s)
	}
	return g
}

func kindOf(t reflect.Type) Kind {
	if t == reflect.TypeFor[time.Duration]() {
		return Duration
	}
	switch t.Kind() {
	case reflect.String:
		return String
	case reflect.Bool:
		return Bool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return Integer
	case reflect.Float32, reflect.Float64:
		return Number
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return List
		}
	}
	// A new kind of setting needs a rendering here before it can be documented.
	panic(fmt.Sprintf("reference: no kind for Go type %s", t))
}

// yamlValue returns v as written in YAML: durations in their shortest form, nil lists as [].
func yamlValue(v reflect.Value) any {
	switch x := v.Interface().(type) {
	case time.Duration:
		return FormatDuration(x)
	case []string:
		if x == nil {
			return []string{}
		}
		return x
	}
	return v.Interface()
}

// FormatDuration writes d in the largest whole unit ("5m", "200us"), as a user would.
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}, {time.Microsecond, "us"}} {
		if d%u.d == 0 {
			return fmt.Sprintf("%d%s", d/u.d, u.name)
		}
	}
	return d.String()
}

// DurationPattern is what a duration setting must look like: Go's duration syntax with a unit
// on every number (config refuses a bare number, which YAML would read as nanoseconds).
const DurationPattern = `^(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`

// docText joins a doc comment into one paragraph and replaces the Go names of t's fields with
// their YAML keys, so the text reads in the terms a user writes.
func docText(doc string, t reflect.Type) string {
	doc = strings.Join(strings.Fields(doc), " ")
	if doc == "" || t.Kind() != reflect.Struct {
		return doc
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || tag == "-" || f.Name == tag {
			continue
		}
		// Not after a dot: "sarama Config.Version" names sarama's field, not ours.
		re := regexp.MustCompile(`(^|[^.\w])` + regexp.QuoteMeta(f.Name) + `\b`)
		doc = re.ReplaceAllString(doc, "${1}`"+tag+"`")
	}
	return doc
}

package reference

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// SchemaID is where the published schema lives; editors key their cache on it.
const SchemaID = "https://raw.githubusercontent.com/kmirror/kmirror/main/docs/kmirror.schema.json"

// object is a JSON object that keeps its keys in the order they were added.
type object []field

type field struct {
	key string
	val any
}

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := marshal(f.key)
		if err != nil {
			return nil, err
		}
		v, err := marshal(f.val)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.key, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// marshal is json.Marshal without HTML escaping: descriptions say "<source.alias>".
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// Schema renders secs as a JSON Schema (draft 2020-12) of the YAML configuration file: every
// object refuses keys it does not know, so an editor flags a misspelt key as kmirror would.
func Schema(secs []Group) ([]byte, error) {
	props := object{}
	for _, g := range secs {
		props = append(props, field{g.Key, groupSchema(g)})
	}
	root := object{
		{"$schema", "https://json-schema.org/draft/2020-12/schema"},
		{"$id", SchemaID},
		{"title", "kmirror configuration"},
		{"description", "kmirror's configuration file (generated from pkg/config; docs/configuration.md explains every setting)."},
		{"type", "object"},
		{"additionalProperties", false},
		{"properties", props},
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("render schema: %w", err)
	}
	return b.Bytes(), nil
}

func groupSchema(g Group) object {
	props := object{}
	for _, s := range g.Settings {
		props = append(props, field{last(s.Key), settingSchema(s)})
	}
	for _, sub := range g.Groups {
		props = append(props, field{last(sub.Key), groupSchema(sub)})
	}
	return object{
		{"description", g.Doc},
		{"type", "object"},
		{"additionalProperties", false},
		{"properties", props},
	}
}

func settingSchema(s Setting) object {
	desc := s.Doc + " Environment variable: " + s.Env + "."
	if s.Kafka != "" {
		desc += " Kafka property: " + s.Kafka + "."
	}
	o := object{{"description", desc}}
	switch s.Kind {
	case Duration:
		o = append(o, field{"type", "string"}, field{"pattern", DurationPattern})
	case List:
		// A comma-separated string is read as a list too (as KMIRROR_* variables give it).
		o = append(o, field{"type", []string{"array", "string"}}, field{"items", object{{"type", "string"}}})
	default:
		o = append(o, field{"type", string(s.Kind)})
	}
	if s.Enum != nil {
		o = append(o, field{"enum", s.Enum})
	}
	o = append(o, field{"default", s.Default})
	return o
}

// last returns the last element of a dotted key.
func last(key string) string {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '.' {
			return key[i+1:]
		}
	}
	return key
}

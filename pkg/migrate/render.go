package migrate

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/kmirror/kmirror/pkg/config"
)

// YAML renders the entries as a kmirror configuration file: nested keys in the order mapped,
// each with the MirrorMaker 2 setting it came from as a comment.
func (r *Result) YAML(header string) ([]byte, error) {
	root := &yaml.Node{Kind: yaml.MappingNode}
	for _, e := range r.Entries {
		parent := root
		parts := strings.Split(e.Key, ".")
		for _, p := range parts[:len(parts)-1] {
			parent = child(parent, p)
		}
		val := &yaml.Node{}
		if err := val.Encode(e.Value); err != nil {
			return nil, fmt.Errorf("render %s: %w", e.Key, err)
		}
		if val.Kind == yaml.SequenceNode {
			val.Style = yaml.FlowStyle
		}
		// The comment goes on the value: on the key of a flow sequence, yaml.v3 moves it to the
		// next line.
		val.LineComment = "from " + e.From
		key := &yaml.Node{Kind: yaml.ScalarNode, Value: parts[len(parts)-1]}
		parent.Content = append(parent.Content, key, val)
	}
	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}, HeadComment: header}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("render the kmirror configuration: %w", err)
	}
	return b.Bytes(), enc.Close()
}

// child returns the mapping under key in m, adding it when missing.
func child(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	c := &yaml.Node{Kind: yaml.MappingNode}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, c)
	return c
}

// Validate loads a rendered configuration the way `kmirror run` does (pkg/config: defaults, the
// file, KMIRROR_* variables) and returns it, or what is wrong with it.
func Validate(data []byte) (*config.Config, error) {
	dir, err := os.MkdirTemp("", "kmirror-migrate-")
	if err != nil {
		return nil, fmt.Errorf("validate the written configuration: %w", err)
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "kmirror.yaml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return nil, fmt.Errorf("validate the written configuration: %w", err)
	}
	cfg, err := config.Load(p, nil)
	if err != nil {
		return nil, fmt.Errorf("the written configuration is not valid (edit the MirrorMaker 2 settings named): %s", strings.ReplaceAll(err.Error(), p, "it"))
	}
	return cfg, nil
}

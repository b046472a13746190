package reference

import (
	"bytes"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultsYAML renders secs as a YAML configuration file holding every default, each key under
// its doc text: what `kmirror config defaults` prints.
func DefaultsYAML(secs []Group) ([]byte, error) {
	doc := &yaml.Node{Kind: yaml.MappingNode}
	for _, g := range secs {
		appendGroup(doc, g, 0)
	}
	var b bytes.Buffer
	b.WriteString("# kmirror's defaults (kmirror config defaults). source.bootstrap and target.bootstrap have\n")
	b.WriteString("# none and must be set. docs/configuration.md explains every setting.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("render defaults: %w", err)
	}
	return b.Bytes(), enc.Close()
}

func appendGroup(m *yaml.Node, g Group, depth int) {
	// Comments end by column 100 at every depth.
	width := 98 - 2*(depth+1)
	body := &yaml.Node{Kind: yaml.MappingNode}
	for _, s := range g.Settings {
		val := &yaml.Node{}
		if err := val.Encode(s.Default); err != nil {
			// Defaults are strings, numbers, booleans and string lists, which always encode.
			panic(fmt.Sprintf("reference: encode default of %s: %v", s.Key, err))
		}
		if s.Kind == List {
			val.Style = yaml.FlowStyle
		}
		body.Content = append(body.Content, keyNode(last(s.Key), wrap(s.Doc, width)), val)
	}
	for _, sub := range g.Groups {
		appendGroup(body, sub, depth+1)
	}
	m.Content = append(m.Content, keyNode(last(g.Key), wrap(g.Doc, width+2)), body)
}

func keyNode(key, comment string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: key, HeadComment: comment}
}

// wrap breaks text into lines of at most width characters.
func wrap(text string, width int) string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

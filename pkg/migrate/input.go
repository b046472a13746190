package migrate

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/magiconair/properties"
	"go.yaml.in/yaml/v3"
)

// Input is a MirrorMaker 2 configuration in the form MirrorMaker 2 itself reads: flat properties,
// as in mm2.properties. A Strimzi KafkaMirrorMaker2 resource is turned into the same form (its
// mirrors become "<source>-><target>." settings), so that one mapping serves both.
type Input struct {
	// Name is the file the configuration came from, for messages.
	Name string
	// Props holds every setting; Keys lists them in the order read.
	Props map[string]string
	Keys  []string
	// Origin names, for a setting made from a Strimzi resource, the resource field it came from
	// (spec.mirrors[0].sourceConnector.tasksMax); notes quote it rather than the made-up key.
	Origin map[string]string
	// Security holds, per cluster alias, TLS and authentication that a Strimzi resource gives as
	// Secret references; nil for mm2.properties, whose ssl.* and sasl.* settings say it.
	Security map[string]*Security
	// OffsetsTopic is the Connect offsets topic the resource names (Strimzi); empty for dedicated
	// mode, whose topic is "mm2-offsets.<source alias>.internal" on the target.
	OffsetsTopic string
	// Notes are about things of the input with no setting key (a Strimzi resource's replicas,
	// resources, probes): reported as they are.
	Notes []Note
}

// Security is how kmirror reaches a cluster, as a Strimzi resource describes it.
type Security struct {
	TLS                       bool
	CAFile, CertFile, KeyFile string
	Mechanism, Username       string
	PasswordFile              string
	// From is the resource field it came from, for notes.
	From string
}

// Parse reads a MirrorMaker 2 configuration: a Strimzi KafkaMirrorMaker2 resource when the data
// is YAML with kind KafkaMirrorMaker2, else Java properties (mm2.properties). Config provider
// references (${file:...}) are kept as written: kmirror cannot resolve them, and the mapping says
// so where they appear.
func Parse(name string, data []byte) (*Input, error) {
	if kind, ok := yamlKind(data); ok {
		if kind != "KafkaMirrorMaker2" {
			return nil, fmt.Errorf("%s: a Kubernetes resource of kind %q: want a KafkaMirrorMaker2 resource or an mm2.properties file", name, kind)
		}
		return parseStrimzi(name, data)
	}
	return parseProperties(name, data)
}

// yamlKind returns the kind of a YAML document that has one.
func yamlKind(data []byte) (string, bool) {
	if !bytes.Contains(data, []byte("kind:")) {
		return "", false
	}
	var doc struct {
		Kind string `yaml:"kind"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil || doc.Kind == "" {
		return "", false
	}
	return doc.Kind, true
}

func parseProperties(name string, data []byte) (*Input, error) {
	l := &properties.Loader{Encoding: properties.UTF8, DisableExpansion: true}
	p, err := l.LoadBytes(data)
	if err != nil {
		return nil, fmt.Errorf("%s: read as Java properties: %w", name, err)
	}
	in := &Input{Name: name, Props: make(map[string]string), Origin: map[string]string{}}
	for _, k := range p.Keys() {
		v, _ := p.Get(k)
		in.Props[k] = strings.TrimSpace(v)
		in.Keys = append(in.Keys, k)
	}
	if _, ok := in.Props["clusters"]; !ok {
		return nil, fmt.Errorf("%s: no \"clusters\" setting: not an mm2.properties (MirrorMaker 2 in dedicated mode lists its cluster aliases there, e.g. clusters = europe, us)", name)
	}
	return in, nil
}

// set adds a setting made from a resource field.
func (in *Input) set(key, value, origin string) {
	if _, ok := in.Props[key]; !ok {
		in.Keys = append(in.Keys, key)
	}
	in.Props[key] = value
	in.Origin[key] = origin
}

// setConfig adds the settings of a resource's free-form config block, each key with prefix in
// front, in sorted order (a YAML map has none).
func (in *Input) setConfig(prefix string, cfg map[string]any, origin string) {
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		in.set(prefix+k, fmt.Sprint(cfg[k]), origin+"."+k)
	}
}

// list splits a MirrorMaker 2 list setting (comma separated, spaces around items ignored).
func list(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// EnvPrefix prefixes the environment variables that override configuration keys:
// KMIRROR_SOURCE_BOOTSTRAP overrides source.bootstrap.
const EnvPrefix = "KMIRROR"

// Load reads the configuration: defaults, then the YAML file at path (if path is not empty), then
// KMIRROR_* environment variables, then overrides (key=value pairs, as given to --set). It
// rejects unknown keys and invalid values, naming each.
func Load(path string, overrides []string) (*Config, error) {
	v := viper.New()
	known := make(map[string]bool)
	def := Default()
	walkLeaves("", reflect.ValueOf(def), func(key string, val any) {
		known[key] = true
		v.SetDefault(key, val)
	})

	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	if path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("read config %s: file does not exist", path)
			}
			return nil, fmt.Errorf("read config %s: %w", path, err)
		}
	}
	for _, kv := range overrides {
		key, val, ok := strings.Cut(kv, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		if !ok || key == "" {
			return nil, fmt.Errorf("--set %q: want key=value, e.g. --set producer.compression=zstd", kv)
		}
		if !known[key] {
			return nil, fmt.Errorf("--set %q: unknown key %q%s (every key is listed in configs/kmirror.yaml)", kv, key, didYouMean(key, known))
		}
		v.Set(key, val)
	}

	if err := checkEnv(os.Environ(), known); err != nil {
		return nil, err
	}
	var unknown []string
	for _, key := range v.AllKeys() {
		if !known[key] {
			unknown = append(unknown, key)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		for _, key := range unknown {
			if now, ok := replaced[key]; ok {
				return nil, fmt.Errorf("%s: %s was replaced by %s", key, key, now)
			}
		}
		where := "the configuration"
		if path != "" {
			where = path
		}
		for i, key := range unknown {
			unknown[i] = fmt.Sprintf("%q%s", key, didYouMean(key, known))
		}
		return nil, fmt.Errorf("%s: unknown key(s) %s: not kmirror settings (check the spelling against configs/kmirror.yaml)",
			where, strings.Join(unknown, ", "))
	}

	cfg := def
	err := v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true
		dc.ZeroFields = true
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			durationNeedsAUnit,
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
	})
	if err != nil {
		return nil, fmt.Errorf("decode configuration: %w", explainDecode(err))
	}
	if cfg.Consumer.GroupInstanceID, err = expandEnv("consumer.group_instance_id", cfg.Consumer.GroupInstanceID); err != nil {
		return nil, err
	}
	normalise(&cfg)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// expandEnv replaces ${NAME} and $NAME in the value of key with the environment variable NAME. A
// variable that is not set is an error: an instance id that silently became "" or "kmirror-"
// would make every replica the same member, or none static.
func expandEnv(key, val string) (string, error) {
	var missing []string
	out := os.Expand(val, func(name string) string {
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("%s: %q names the environment variable(s) %s, which are not set: set them or write the value out",
			key, val, strings.Join(missing, ", "))
	}
	return out, nil
}

// replaced names the keys that earlier versions had, and what took their place.
var replaced = map[string]string{
	"producer.retry_max": "producer.delivery_timeout: a time budget for each record, like Kafka's delivery.timeout.ms " +
		"(a retry count gave up after 2.5 s, before a failed broker's partitions had moved)",
	"producer.oversize_policy": "producer.refused_policy, which covers every record the target refuses (too large, " +
		"a timestamp out of bounds, no key in a compacted topic)",
}

// walkLeaves calls fn with the dotted mapstructure path and value of every leaf field of v.
func walkLeaves(prefix string, v reflect.Value, fn func(string, any)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && f.Type.PkgPath() != "time" {
			walkLeaves(key, fv, fn)
			continue
		}
		fn(key, fv.Interface())
	}
}

// durationNeedsAUnit refuses a bare number where a duration is expected: YAML reads
// "interval: 5" as the integer 5, which would otherwise become 5 nanoseconds.
func durationNeedsAUnit(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(time.Duration(0)) || from == to {
		return data, nil
	}
	switch from.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return nil, fmt.Errorf("%v has no unit: a duration needs one, e.g. %vs or %vms", data, data, data)
	case reflect.String:
		if _, err := strconv.ParseFloat(strings.TrimSpace(data.(string)), 64); err == nil {
			return nil, fmt.Errorf("%q has no unit: a duration needs one, e.g. %ss or %sms", data, data, data)
		}
	}
	return data, nil
}

// checkEnv refuses a KMIRROR_<SECTION>_… environment variable that names no key (a typo would
// otherwise be ignored silently). Other KMIRROR_ variables (the tooling's) are left alone.
func checkEnv(environ []string, known map[string]bool) error {
	names := make(map[string]string, len(known))
	// The sections are the top-level keys, taken from the settings themselves (a hand-kept list
	// missed heartbeats): a KMIRROR_<SECTION>_… variable is meant as a setting.
	sections := make(map[string]bool)
	for key := range known {
		names[envName(key)] = key
		section, _, _ := strings.Cut(key, ".")
		sections[section] = true
	}
	var bad []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix+"_") {
			continue
		}
		if _, ok := names[name]; ok {
			continue
		}
		rest := strings.ToLower(strings.TrimPrefix(name, EnvPrefix+"_"))
		for sec := range sections {
			if strings.HasPrefix(rest, sec+"_") {
				hint := ""
				if key := closest(strings.ToLower(name), envKeys(names)); key != "" {
					hint = fmt.Sprintf(" (did you mean %s?)", strings.ToUpper(key))
				}
				bad = append(bad, name+hint)
				break
			}
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("environment: %s: not kmirror settings (a setting's variable is %s_ and its key path in capitals "+
			"with _ for ., e.g. KMIRROR_PRODUCER_COMPRESSION)", strings.Join(bad, ", "), EnvPrefix)
	}
	return nil
}

func envName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func envKeys(names map[string]string) map[string]bool {
	out := make(map[string]bool, len(names))
	for n := range names {
		out[strings.ToLower(n)] = true
	}
	return out
}

// didYouMean suggests the known key closest to key, if one is close.
func didYouMean(key string, known map[string]bool) string {
	if k := closest(key, known); k != "" {
		return fmt.Sprintf(" (did you mean %q?)", k)
	}
	return ""
}

// closest returns the candidate nearest to s by edit distance, if it is within a third of s's
// length (at least 2 edits), else "".
func closest(s string, candidates map[string]bool) string {
	best, bestD := "", max(2, len(s)/3)+1
	for c := range candidates {
		if d := editDistance(s, c); d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Effective lists every setting of c as "key: value" lines in the order of configs/kmirror.yaml,
// secrets replaced by "(set)".
func (c *Config) Effective() []string {
	var out []string
	walkLeaves("", reflect.ValueOf(*c), func(key string, val any) {
		switch v := val.(type) {
		case []string:
			val = "[" + strings.Join(v, ", ") + "]"
		case string:
			val = strconv.Quote(v)
			if strings.HasSuffix(key, ".password") && v != "" {
				val = "(set)"
			}
		}
		out = append(out, fmt.Sprintf("%s: %v", key, val))
	})
	return out
}

// explainDecode turns mapstructure's decode errors into lines that name the key and the type
// expected ("'ring.workers' expected type 'int', got unconvertible type 'string'").
func explainDecode(err error) error {
	var de *mapstructure.DecodeError
	if errors.As(err, &de) {
		return fmt.Errorf("%s: %w (see configs/kmirror.yaml for the expected form)", de.Name(), de.Unwrap())
	}
	return err
}

func normalise(c *Config) {
	for _, cl := range []*Cluster{&c.Source, &c.Target} {
		cl.Bootstrap = trimAll(cl.Bootstrap)
		cl.SASL.Mechanism = strings.ToUpper(strings.TrimSpace(cl.SASL.Mechanism))
	}
	c.Topics.Include = trimAll(c.Topics.Include)
	c.Topics.Exclude = trimAll(c.Topics.Exclude)
	c.Topics.ReplicationPolicy = strings.ToLower(c.Topics.ReplicationPolicy)
	c.Producer.Compression = strings.ToLower(c.Producer.Compression)
	c.Producer.RefusedPolicy = strings.ToLower(c.Producer.RefusedPolicy)
	c.Topics.SyncConfigs = trimAll(c.Topics.SyncConfigs)
	c.Consumer.IsolationLevel = strings.ToLower(c.Consumer.IsolationLevel)
	c.Consumer.InitialOffset = strings.ToLower(c.Consumer.InitialOffset)
	// Kafka's own words for the same thing (auto.offset.reset).
	switch c.Consumer.InitialOffset {
	case "earliest":
		c.Consumer.InitialOffset = "oldest"
	case "latest":
		c.Consumer.InitialOffset = "newest"
	}
	c.Consumer.RebalanceStrategy = strings.ToLower(c.Consumer.RebalanceStrategy)
}

func trimAll(in []string) []string {
	out := in[:0:0]
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func quoteAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

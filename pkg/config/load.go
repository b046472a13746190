package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

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
			return nil, fmt.Errorf("--set %q: unknown key %q (every key is listed in configs/kmirror.yaml)", kv, key)
		}
		v.Set(key, val)
	}

	var unknown []string
	for _, key := range v.AllKeys() {
		if !known[key] {
			unknown = append(unknown, key)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		where := "the configuration"
		if path != "" {
			where = path
		}
		return nil, fmt.Errorf("%s: unknown key(s) %s: not kmirror settings (check the spelling against configs/kmirror.yaml)",
			where, strings.Join(quoteAll(unknown), ", "))
	}

	cfg := def
	err := v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true
		dc.ZeroFields = true
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
	})
	if err != nil {
		return nil, fmt.Errorf("decode configuration: %w", explainDecode(err))
	}
	normalise(&cfg)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
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
	c.Producer.OversizePolicy = strings.ToLower(c.Producer.OversizePolicy)
	c.Producer.RefusedPolicy = strings.ToLower(c.Producer.RefusedPolicy)
	c.Topics.SyncConfigs = trimAll(c.Topics.SyncConfigs)
	c.Consumer.IsolationLevel = strings.ToLower(c.Consumer.IsolationLevel)
	c.Consumer.InitialOffset = strings.ToLower(c.Consumer.InitialOffset)
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

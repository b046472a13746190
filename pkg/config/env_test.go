package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestUnknownVariableOfEverySectionIsAnError: a KMIRROR_<SECTION>_… variable that names no
// setting is refused for every section of Config, so a typo is never ignored silently.
func TestUnknownVariableOfEverySectionIsAnError(t *testing.T) {
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		section := typ.Field(i).Tag.Get("mapstructure")
		name := EnvPrefix + "_" + strings.ToUpper(section) + "_NOT_A_SETTING"
		t.Run(section, func(t *testing.T) {
			t.Setenv(name, "1")
			_, err := Load(writeConfig(t, minimal), nil)
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("%s=1: err = %v, want it refused by name", name, err)
			}
		})
	}
}

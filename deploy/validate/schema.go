package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// crdSchema validates objects of one served CRD version.
type crdSchema struct {
	validator  validation.SchemaValidator
	structural *structuralschema.Structural
}

// Schemas holds the CRD schemas by "group/version Kind".
type Schemas map[string]crdSchema

// LoadCRDs reads every CustomResourceDefinition in dir.
func LoadCRDs(dir string) (Schemas, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no CRDs found in %s (set STRIMZI_CRDS_DIR or --crds; scripts/strimzi/fetch.sh generates them)", dir)
	}
	out := Schemas{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, doc := range bytes.Split(b, []byte("\n---")) {
			if !bytes.Contains(doc, []byte("kind: CustomResourceDefinition")) {
				continue
			}
			var crd apiextensionsv1.CustomResourceDefinition
			if err := yaml.Unmarshal(doc, &crd); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			for _, v := range crd.Spec.Versions {
				if !v.Served || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
					continue
				}
				var internal apiextensions.JSONSchemaProps
				if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
					return nil, fmt.Errorf("%s %s: convert schema: %w", f, v.Name, err)
				}
				val, _, err := validation.NewSchemaValidator(&internal)
				if err != nil {
					return nil, fmt.Errorf("%s %s: schema validator: %w", f, v.Name, err)
				}
				st, err := structuralschema.NewStructural(&internal)
				if err != nil {
					return nil, fmt.Errorf("%s %s: structural schema: %w", f, v.Name, err)
				}
				out[crd.Spec.Group+"/"+v.Name+" "+crd.Spec.Names.Kind] = crdSchema{validator: val, structural: st}
			}
		}
	}
	return out, nil
}

// Has reports whether a CRD schema exists for apiVersion and kind.
func (s Schemas) Has(apiVersion, kind string) bool {
	_, ok := s[apiVersion+" "+kind]
	return ok
}

// Validate checks obj against its CRD schema the way the API server does on create: schema
// errors, and fields the schema does not know (which the API server would prune, or refuse
// under strict field validation).
func (s Schemas) Validate(o Object) []string {
	cs, ok := s[o.APIVersion+" "+o.Kind]
	if !ok {
		return []string{fmt.Sprintf("%s: no CRD schema for this apiVersion and kind", o)}
	}
	var problems []string
	for _, e := range validation.ValidateCustomResource(field.NewPath(""), o.Body, cs.validator) {
		problems = append(problems, fmt.Sprintf("%s: %s", o, strings.TrimPrefix(e.Error(), ".")))
	}
	copyBody := deepCopy(o.Body)
	unknown := pruning.PruneWithOptions(copyBody, cs.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	sort.Strings(unknown)
	for _, path := range unknown {
		problems = append(problems, fmt.Sprintf("%s: unknown field %q (not in the %s schema)", o, path, o.Kind))
	}
	return problems
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = deepCopy(x)
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, x := range t {
			s[i] = deepCopy(x)
		}
		return s
	default:
		return v
	}
}

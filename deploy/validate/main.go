// Command validate checks kmirror's deployment manifests offline: it renders every kustomize
// target under deploy/kubernetes, decodes built-in kinds strictly into the real Kubernetes API
// types, validates Strimzi resources against the openAPIV3Schema of the Strimzi CRDs (as the API
// server would, unknown fields included), and applies the policies the deployment promises
// (OpenShift restricted-v2 security context, probes, KRaft node pools, storage class).
//
// It exits 1 and names the target, object and field of every problem.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	root := flag.String("root", "../..", "repository root")
	crds := flag.String("crds", "", "directory of the Strimzi CRDs (default $STRIMZI_CRDS_DIR or <root>/"+SharedCRDs+")")
	flag.Parse()
	dir := *crds
	if dir == "" {
		dir = os.Getenv("STRIMZI_CRDS_DIR")
	}
	if dir == "" {
		dir = filepath.Join(*root, SharedCRDs)
	}
	schemas, err := LoadCRDs(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "validate:", err)
		os.Exit(1)
	}
	compat, err := LoadCompat(*root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "validate:", err)
		os.Exit(1)
	}
	failed := false
	for _, target := range Targets {
		problems, n, err := CheckTarget(filepath.Join(*root, target.Path), target, schemas, compat)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", target.Path, err)
			failed = true
			continue
		}
		for _, p := range problems {
			fmt.Fprintf(os.Stderr, "%s: %s\n", target.Path, p)
		}
		if len(problems) > 0 {
			failed = true
			continue
		}
		fmt.Printf("%s: %d objects valid\n", target.Path, n)
	}
	if failed {
		os.Exit(1)
	}
}

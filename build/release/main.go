// Command release builds a kmirror release into a dist directory: static binaries for
// linux/amd64 and linux/arm64, a CycloneDX SBOM per binary (cyclonedx-gomod), a multi-arch OCI
// image index assembled from scratch around those binaries (go-containerregistry, the library
// behind crane and ko), and SHA256SUMS over all of them. `make release` and `make release-snapshot`
// run it; docs/releasing.md says what a networked builder does next (push, sign).
//
// Invariants:
//   - Without -snapshot it refuses a tree with uncommitted changes and a HEAD that is not exactly
//     at a v* tag: what it builds is what the tag names, nothing else.
//   - The version stamped into the binaries is the one the image, the file names and the SBOM
//     carry; the build date is the commit's time, so two builds of one commit are identical.
//   - It needs no container engine and no registry: the image has no base layer to pull.
//
// Why not goreleaser: it is the usual choice, but its image steps need a Docker engine (or ko
// pulling a base image from a registry), neither of which a release builder without registry
// access has; what it would add beyond this file (archives, changelog, publishing) is done by the
// networked builder. This tool only wires well-kept libraries and `go build`.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// platforms are the release targets; the image index carries one image per entry.
var platforms = []platform{{"linux", "amd64"}, {"linux", "arm64"}}

type platform struct{ OS, Arch string }

func (p platform) String() string { return p.OS + "/" + p.Arch }

// build describes one release: where the source is, what it is called, where it goes.
type build struct {
	Root     string // repository root (the kmirror module)
	ToolDir  string // this module's directory, where `go tool cyclonedx-gomod` resolves
	Dist     string
	Version  string
	Commit   string
	Date     time.Time
	ImageRef string // repository the image is meant for, recorded in the OCI layout
}

func main() {
	var (
		root     = flag.String("root", "../..", "kmirror repository root")
		dist     = flag.String("dist", "dist", "output directory (emptied first)")
		snapshot = flag.Bool("snapshot", false, "allow an untagged or dirty tree; the version says which")
		image    = flag.String("image", "quay.io/kmirror/kmirror", "image repository the layout is tagged for")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *root, *dist, *image, *snapshot); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, root, dist, image string, snapshot bool) error {
	start := time.Now()
	root, err := filepath.Abs(root)
	if err != nil {
		return fmt.Errorf("resolve -root: %w", err)
	}
	toolDir, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	if !filepath.IsAbs(dist) {
		dist = filepath.Join(root, dist)
	}
	b, err := describe(ctx, root, snapshot)
	if err != nil {
		return err
	}
	b.Root, b.ToolDir, b.Dist, b.ImageRef = root, toolDir, dist, image
	fmt.Printf("release %s (commit %s, %s) into %s\n", b.Version, b.Commit, b.Date.Format(time.RFC3339), dist)

	if err := os.RemoveAll(dist); err != nil {
		return fmt.Errorf("empty %s: %w", dist, err)
	}
	if err := os.MkdirAll(dist, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dist, err)
	}
	var artefacts []string
	binaries := map[platform]string{}
	for _, p := range platforms {
		bin, err := b.binary(ctx, p)
		if err != nil {
			return err
		}
		sbom, err := b.sbom(ctx, p, bin)
		if err != nil {
			return err
		}
		binaries[p] = bin
		artefacts = append(artefacts, bin, sbom)
	}
	tarball, err := b.image(binaries)
	if err != nil {
		return err
	}
	artefacts = append(artefacts, tarball)
	if err := writeChecksums(filepath.Join(dist, "SHA256SUMS"), artefacts); err != nil {
		return err
	}
	fmt.Printf("release %s done in %s\n", b.Version, time.Since(start).Round(time.Second))
	return nil
}

// describe reads the version, commit and commit time from git, and enforces the clean-tree and
// tag rules unless snapshot is set.
func describe(ctx context.Context, root string, snapshot bool) (build, error) {
	var b build
	status, err := git(ctx, root, "status", "--porcelain", "--untracked-files=normal")
	if err != nil {
		return b, err
	}
	dirty := status != ""
	if dirty && !snapshot {
		return b, fmt.Errorf("the tree has uncommitted changes (git status --porcelain):\n%s\n"+
			"commit or stash them, or build a snapshot with `make release-snapshot`", status)
	}
	if b.Commit, err = git(ctx, root, "rev-parse", "HEAD"); err != nil {
		return b, err
	}
	ts, err := git(ctx, root, "log", "-1", "--format=%ct", "HEAD")
	if err != nil {
		return b, err
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return b, fmt.Errorf("commit time %q: %w", ts, err)
	}
	b.Date = time.Unix(sec, 0).UTC()
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return b, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a Unix time in seconds: %w", v, err)
		}
		b.Date = time.Unix(sec, 0).UTC()
	}

	tag, tagErr := git(ctx, root, "describe", "--tags", "--exact-match", "--match", "v[0-9]*", "HEAD")
	switch {
	case tagErr == nil && !dirty:
		b.Version = tag
		return b, nil
	case !snapshot:
		return b, fmt.Errorf("HEAD %s is not at a v* tag (git describe --exact-match: %v); "+
			"tag it (git tag -a v0.2.0) or build a snapshot with `make release-snapshot`", b.Commit[:12], tagErr)
	}
	b.Version, err = git(ctx, root, "describe", "--tags", "--match", "v[0-9]*", "HEAD")
	if err != nil { // no v* tag anywhere in the history
		b.Version = "dev"
	}
	// Untracked files count as dirty here, unlike git describe --dirty: they can change the build.
	if dirty {
		b.Version += "-dirty"
	}
	return b, nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// binary builds the static kmirror binary for p and returns its path.
func (b build) binary(ctx context.Context, p platform) (string, error) {
	out := filepath.Join(b.Dist, fmt.Sprintf("kmirror-%s-%s-%s", b.Version, p.OS, p.Arch))
	pkg := "github.com/kmirror/kmirror/pkg/version"
	ldflags := fmt.Sprintf("-s -w -buildid= -X %[1]s.Version=%[2]s -X %[1]s.Commit=%[3]s -X %[1]s.Date=%[4]s",
		pkg, b.Version, b.Commit, b.Date.Format(time.RFC3339))
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, "./cmd/kmirror")
	cmd.Dir = b.Root
	// CGO_ENABLED=0 is what makes the binary static (no libc, no interpreter); the release check
	// verifies it on the ELF file.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch, "GOFLAGS=-buildvcs=false")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	t := time.Now()
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build kmirror for %s: %w", p, err)
	}
	fmt.Printf("  built %s (%s)\n", filepath.Base(out), time.Since(t).Round(time.Second))
	return out, nil
}

// sbom writes the CycloneDX SBOM of the binary for p: the modules its build information records
// as linked in (`go version -m`), with their versions and go.sum hashes, and kmirror at the
// release version. Reading the binary rather than the source tree describes exactly what ships.
func (b build) sbom(ctx context.Context, p platform, bin string) (string, error) {
	out := bin + ".cdx.json"
	cmd := exec.CommandContext(ctx, "go", "tool", "cyclonedx-gomod", "bin",
		"-json", "-noserial", "-notimestamp", "-licenses=false", "-version", b.Version, "-output", out, bin)
	cmd.Dir = b.ToolDir
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = os.Stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("cyclonedx-gomod app for %s: %w: %s", p, err, stderr.String())
	}
	if _, err := os.Stat(out); err != nil {
		return "", errors.Join(fmt.Errorf("cyclonedx-gomod wrote no SBOM for %s", p), err)
	}
	fmt.Printf("  sbom  %s\n", filepath.Base(out))
	return out, nil
}

// writeChecksums writes `sha256sum` lines for the artefacts, named relative to the file's
// directory, so `sha256sum -c SHA256SUMS` in that directory verifies them.
func writeChecksums(out string, artefacts []string) error {
	var buf bytes.Buffer
	for _, a := range artefacts {
		f, err := os.Open(a)
		if err != nil {
			return fmt.Errorf("checksum %s: %w", a, err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("checksum %s: %w", a, err)
		}
		rel, err := filepath.Rel(filepath.Dir(out), a)
		if err != nil {
			return fmt.Errorf("checksum %s: %w", a, err)
		}
		fmt.Fprintf(&buf, "%x  %s\n", h.Sum(nil), filepath.ToSlash(rel))
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	fmt.Printf("  sums  %s (%d files)\n", filepath.Base(out), len(artefacts))
	return nil
}

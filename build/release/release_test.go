package main

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"golang.org/x/mod/modfile"
)

// TestReleaseArtefacts verifies a dist directory written by this tool (`make release-check` sets
// KMIRROR_DIST): both binaries static, `kmirror version` of the amd64 one naming the version and
// commit, SHA256SUMS verifying, the SBOM listing sarama at the version go.mod pins, and the OCI
// image index holding both platforms, non-root, with the binary as entrypoint.
func TestReleaseArtefacts(t *testing.T) {
	dist := os.Getenv("KMIRROR_DIST")
	if dist == "" {
		t.Skip("KMIRROR_DIST is not set: run `make release-check`, which builds a snapshot and sets it")
	}
	sums := readChecksums(t, filepath.Join(dist, "SHA256SUMS"))
	version := versionFromNames(t, sums)
	t.Logf("release %s: %d artefacts in SHA256SUMS", version, len(sums))

	t.Run("checksums", func(t *testing.T) {
		for name, want := range sums {
			if got := fileSHA256(t, filepath.Join(dist, name)); got != want {
				t.Errorf("%s: sha256 %s, SHA256SUMS says %s", name, got, want)
			}
		}
		for _, p := range platforms {
			for _, suffix := range []string{"", ".cdx.json"} {
				name := binaryName(version, p) + suffix
				if _, ok := sums[name]; !ok {
					t.Errorf("SHA256SUMS does not cover %s", name)
				}
			}
		}
		if _, ok := sums["kmirror-"+version+"-oci.tar"]; !ok {
			t.Errorf("SHA256SUMS does not cover kmirror-%s-oci.tar", version)
		}
	})

	t.Run("static", func(t *testing.T) {
		for _, p := range platforms {
			if err := staticELF(filepath.Join(dist, binaryName(version, p)), p.Arch); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("version", func(t *testing.T) {
		if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
			t.Skipf("the amd64 binary cannot run on %s/%s", runtime.GOOS, runtime.GOARCH)
		}
		out, err := exec.Command(filepath.Join(dist, binaryName(version, platform{"linux", "amd64"})), "version").CombinedOutput()
		if err != nil {
			t.Fatalf("kmirror version: %v: %s", err, out)
		}
		commit := gitHead(t)
		re := regexp.MustCompile(`^kmirror ` + regexp.QuoteMeta(version) + ` \(commit ` + commit +
			`, built \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, go[^,]+, linux/amd64\)\n$`)
		if !re.Match(out) {
			t.Errorf("kmirror version printed %q, want %s", out, re)
		}
	})

	t.Run("sbom", func(t *testing.T) {
		pinned := pinnedVersion(t, "github.com/IBM/sarama")
		for _, p := range platforms {
			name := binaryName(version, p) + ".cdx.json"
			if err := sbomLists(filepath.Join(dist, name), "github.com/IBM/sarama", pinned); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	})

	t.Run("image", func(t *testing.T) {
		checkImage(t, filepath.Join(dist, "oci"), version, func(p platform) string {
			return sums[binaryName(version, p)]
		})
	})
}

func checkImage(t *testing.T, dir, version string, binarySum func(platform) string) {
	lp, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("open OCI layout: %v", err)
	}
	top, err := lp.IndexManifest()
	if err != nil {
		t.Fatalf("layout index.json: %v", err)
	}
	if len(top.Manifests) != 1 || !top.Manifests[0].MediaType.IsIndex() ||
		top.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != version {
		t.Fatalf("layout index.json should name one image index tagged %s, has %+v", version, top.Manifests)
	}
	idx, err := lp.ImageIndex(top.Manifests[0].Digest)
	if err != nil {
		t.Fatalf("image index: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatalf("image index manifest: %v", err)
	}
	seen := map[platform]bool{}
	for _, desc := range im.Manifests {
		if desc.Platform == nil {
			t.Errorf("manifest %s has no platform", desc.Digest)
			continue
		}
		p := platform{desc.Platform.OS, desc.Platform.Architecture}
		seen[p] = true
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatalf("%s image: %v", p, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatalf("%s config: %v", p, err)
		}
		if cf.OS != p.OS || cf.Architecture != p.Arch {
			t.Errorf("%s: config says %s/%s", p, cf.OS, cf.Architecture)
		}
		if err := nonRoot(cf.Config.User); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		if want := []string{"/" + imageBinary}; strings.Join(cf.Config.Entrypoint, " ") != want[0] {
			t.Errorf("%s: entrypoint %q, want %q", p, cf.Config.Entrypoint, want)
		}
		if got, want := imageFileSHA256(t, img, imageBinary), binarySum(p); got != want {
			t.Errorf("%s: /%s sha256 %s, the release binary's is %s", p, imageBinary, got, want)
		}
	}
	for _, p := range platforms {
		if !seen[p] {
			t.Errorf("image index lacks %s (has %d manifests)", p, len(im.Manifests))
		}
	}
}

// staticELF fails unless path is an ELF executable for arch with no program interpreter and no
// shared libraries: what runs on scratch and on any Linux.
func staticELF(path, arch string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if f.Machine != want {
		return fmt.Errorf("%s: machine %s, want %s", path, f.Machine, want)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s: dynamically linked (has an ELF interpreter); build with CGO_ENABLED=0", path)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("%s: needs shared libraries %v", path, libs)
	}
	return nil
}

// nonRoot fails for an image user that runs as root: empty, "root", or UID 0.
func nonRoot(user string) error {
	name, _, _ := strings.Cut(user, ":")
	if name == "" || name == "root" || name == "0" {
		return fmt.Errorf("image runs as root (User %q); set a numeric non-root UID", user)
	}
	if strings.Trim(name, "0123456789") != "" {
		return fmt.Errorf("image user %q is a name: Kubernetes' runAsNonRoot can only verify a numeric UID", user)
	}
	return nil
}

// sbomLists fails unless the CycloneDX JSON SBOM has a component name@version.
func sbomLists(path, name, version string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var bom struct {
		BOMFormat  string `json:"bomFormat"`
		Components []struct {
			Name    string `json:"name"`
			Version string `json:"version"`
			PURL    string `json:"purl"`
		} `json:"components"`
	}
	if err := json.Unmarshal(data, &bom); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if bom.BOMFormat != "CycloneDX" {
		return fmt.Errorf("bomFormat %q, want CycloneDX", bom.BOMFormat)
	}
	var found []string
	for _, c := range bom.Components {
		if c.Name == name {
			if c.Version == version {
				return nil
			}
			found = append(found, c.Version)
		}
	}
	return fmt.Errorf("%d components, %s@%s not among them (versions found: %v)", len(bom.Components), name, version, found)
}

func readChecksums(t *testing.T, path string) map[string]string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if _, err := hex.DecodeString(sum); !ok || err != nil || len(sum) != 64 {
			t.Fatalf("%s: line %q is not `<sha256>  <file>`", path, sc.Text())
		}
		sums[name] = sum
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return sums
}

var amd64Name = regexp.MustCompile(`^kmirror-(.+)-linux-amd64$`)

func versionFromNames(t *testing.T, sums map[string]string) string {
	for name := range sums {
		if m := amd64Name.FindStringSubmatch(name); m != nil {
			return m[1]
		}
	}
	t.Fatalf("SHA256SUMS names no kmirror-<version>-linux-amd64 binary: %v", sums)
	return ""
}

func binaryName(version string, p platform) string {
	return fmt.Sprintf("kmirror-%s-%s-%s", version, p.OS, p.Arch)
}

func fileSHA256(t *testing.T, path string) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func imageFileSHA256(t *testing.T, img v1.Image, name string) string {
	layers, err := img.Layers()
	if err != nil {
		t.Fatalf("layers: %v", err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatalf("layer: %v", err)
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("layer tar: %v", err)
			}
			if hdr.Name == name {
				if hdr.Mode&0o111 == 0 {
					t.Errorf("/%s is not executable (mode %o)", name, hdr.Mode)
				}
				h := sha256.New()
				if _, err := io.Copy(h, tr); err != nil {
					t.Fatalf("read /%s: %v", name, err)
				}
				rc.Close()
				return hex.EncodeToString(h.Sum(nil))
			}
		}
		rc.Close()
	}
	t.Fatalf("no /%s in the image", name)
	return ""
}

func gitHead(t *testing.T) string {
	out, err := exec.Command("git", "-C", "../..", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// pinnedVersion is the version of mod that kmirror's go.mod requires.
func pinnedVersion(t *testing.T, mod string) string {
	data, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatalf("read kmirror's go.mod: %v", err)
	}
	f, err := modfile.ParseLax("go.mod", data, nil)
	if err != nil {
		t.Fatalf("parse kmirror's go.mod: %v", err)
	}
	for _, r := range f.Require {
		if r.Mod.Path == mod {
			return r.Mod.Version
		}
	}
	t.Fatalf("kmirror's go.mod does not require %s", mod)
	return ""
}

func TestStaticELFRejectsDynamicBinary(t *testing.T) {
	// The test binary itself is the one ELF file certain to be here; with cgo (the default where
	// a C compiler exists) it is dynamic, without it static. Check whichever it is both ways.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(self)
	if err != nil {
		t.Skipf("not an ELF system: %v", err)
	}
	dynamic := false
	for _, p := range f.Progs {
		dynamic = dynamic || p.Type == elf.PT_INTERP
	}
	f.Close()
	err = staticELF(self, runtime.GOARCH)
	if dynamic && err == nil {
		t.Errorf("staticELF accepted a dynamically linked binary %s", self)
	}
	if !dynamic && err != nil {
		t.Errorf("staticELF rejected a static binary: %v", err)
	}
}

func TestNonRoot(t *testing.T) {
	for user, ok := range map[string]bool{
		"": false, "0": false, "root": false, "0:0": false, "root:root": false, "nobody": false,
		"1001": true, "1001:0": true, "65532:65532": true,
	} {
		if err := nonRoot(user); (err == nil) != ok {
			t.Errorf("nonRoot(%q) = %v, want ok=%v", user, err, ok)
		}
	}
}

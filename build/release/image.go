package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image layout: one layer on scratch holding the static binary and the example configuration,
// the same paths as the Containerfile, so the manifests under deploy/ work with either image.
const (
	imageBinary = "usr/local/bin/kmirror"
	imageConfig = "etc/kmirror/kmirror.yaml"
	// imageUser is numeric so that Kubernetes' runAsNonRoot can verify it without an /etc/passwd;
	// any other UID works too (OpenShift's arbitrary UIDs): nothing is written at run time.
	imageUser = "1001:0"
)

// image assembles the multi-arch OCI image index around the release binaries, writes it as an
// OCI layout directory (dist/oci) and as a tarball of that directory, and returns the tarball.
// `crane push dist/oci quay.io/kmirror/kmirror:TAG` pushes it from a networked builder.
func (b build) image(binaries map[platform]string) (string, error) {
	cfgYAML, err := os.ReadFile(filepath.Join(b.Root, "configs", "kmirror.yaml"))
	if err != nil {
		return "", fmt.Errorf("read the image's configuration: %w", err)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		img, err := b.platformImage(p, binaries[p], cfgYAML)
		if err != nil {
			return "", err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch}},
		})
	}
	idx = mutate.Annotations(idx, b.annotations()).(v1.ImageIndex)

	dir := filepath.Join(b.Dist, "oci")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return "", fmt.Errorf("create OCI layout %s: %w", dir, err)
	}
	// The layout's index.json names one entry, the multi-arch index, tagged with the version:
	// `crane push` pushes a layout's single entry, and skopeo/podman find it by the ref name.
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": b.Version,
	})); err != nil {
		return "", fmt.Errorf("write the image index into %s: %w", dir, err)
	}
	digest, err := idx.Digest()
	if err != nil {
		return "", fmt.Errorf("image index digest: %w", err)
	}
	tarPath := filepath.Join(b.Dist, fmt.Sprintf("kmirror-%s-oci.tar", b.Version))
	if err := tarDir(tarPath, dir, b.Date); err != nil {
		return "", err
	}
	fmt.Printf("  image %s index %s (%s)\n", filepath.Base(tarPath), digest, "linux/amd64, linux/arm64")
	return tarPath, nil
}

func (b build) annotations() map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "kmirror",
		"org.opencontainers.image.description": "Kafka cross-cluster mirroring daemon",
		"org.opencontainers.image.version":     b.Version,
		"org.opencontainers.image.revision":    b.Commit,
		"org.opencontainers.image.created":     b.Date.Format(time.RFC3339),
		"org.opencontainers.image.source":      "https://github.com/kmirror/kmirror",
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.base.name":   "scratch",
	}
}

func (b build) platformImage(p platform, bin string, cfgYAML []byte) (v1.Image, error) {
	binData, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", bin, err)
	}
	layerTar, err := rootfs(b.Date, map[string]file{
		imageBinary: {binData, 0o755},
		imageConfig: {cfgYAML, 0o644},
	})
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer for %s: %w", p, err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	cf, err := base.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("empty image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = p.OS, p.Arch
	cf.Created = v1.Time{Time: b.Date}
	cf.Config = v1.Config{
		User:         imageUser,
		Entrypoint:   []string{"/" + imageBinary},
		Cmd:          []string{"run", "--config", "/" + imageConfig},
		ExposedPorts: map[string]struct{}{"9464/tcp": {}},
		Labels:       b.annotations(),
		WorkingDir:   "/",
	}
	img, err := mutate.ConfigFile(base, cf)
	if err != nil {
		return nil, fmt.Errorf("config for %s: %w", p, err)
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: b.Date},
			CreatedBy: "build/release: kmirror " + b.Version + " for " + p.String(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("append the layer for %s: %w", p, err)
	}
	return mutate.Annotations(img, b.annotations()).(v1.Image), nil
}

type file struct {
	data []byte
	mode int64
}

// rootfs is a deterministic tar of files and their parent directories: sorted, owned by root,
// every time the build date, so one commit gives one layer digest.
func rootfs(date time.Time, files map[string]file) ([]byte, error) {
	dirs := map[string]bool{}
	for name := range files {
		for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
			dirs[d+"/"] = true
		}
	}
	var names []string
	for d := range dirs {
		names = append(names, d)
	}
	for f := range files {
		names = append(names, f)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range names {
		hdr := &tar.Header{Name: name, ModTime: date, Format: tar.FormatPAX, Uname: "root", Gname: "root"}
		if f, ok := files[name]; ok {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, f.mode, int64(len(f.data))
		} else {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", name, err)
		}
		if f, ok := files[name]; ok {
			if _, err := tw.Write(f.data); err != nil {
				return nil, fmt.Errorf("layer entry %s: %w", name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer: %w", err)
	}
	return buf.Bytes(), nil
}

// tarDir writes dir as a tarball (paths relative to dir, sorted, fixed times), the form an OCI
// layout travels in: `tar -xf` it and `crane push` the directory, or `skopeo copy oci-archive:`.
func tarDir(out, dir string, date time.Time) error {
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: date, Format: tar.FormatPAX, Mode: 0o644, Typeflag: tar.TypeReg}
		if d.IsDir() {
			hdr.Name, hdr.Mode, hdr.Typeflag = hdr.Name+"/", 0o755, tar.TypeDir
			return tw.WriteHeader(hdr)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		hdr.Size = int64(len(data))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("close %s: %w", out, err)
	}
	return f.Close()
}

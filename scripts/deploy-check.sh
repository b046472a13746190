#!/usr/bin/env bash
# Validates everything under deploy/ offline: the kustomize renderings against the real
# Kubernetes API types and the Strimzi CRD schemas (deploy/validate, its own Go module, with its
# tests proving broken manifests are refused), the Prometheus alerting rules and their unit tests,
# the systemd unit, and the Containerfile.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# The Strimzi CRDs: STRIMZI_CRDS_DIR when set; else the shared data beside the clone
# (../shared/strimzi-crds), read in place, as their owner asks that they not be copied into the
# repository; else generated from Strimzi's API model on Maven Central (scripts/strimzi/fetch.sh,
# into the git-ignored scripts/strimzi/crds/).
if [ -n "${STRIMZI_CRDS_DIR:-}" ]; then
  crds="$STRIMZI_CRDS_DIR"
elif [ -f "$root/../shared/strimzi-crds/040-Crd-kafka.yaml" ]; then
  crds="$(cd "$root/../shared/strimzi-crds" && pwd)"
else
  echo "deploy-check: no ../shared/strimzi-crds beside the clone; the Strimzi CRDs come from scripts/strimzi/fetch.sh (generated on first use)" >&2
  crds="$("$root/scripts/strimzi/fetch.sh")" || {
    echo "deploy-check: could not generate the Strimzi CRDs: put the shared data beside the clone (../shared/strimzi-crds)" >&2
    echo "or set STRIMZI_CRDS_DIR to a directory of Strimzi's CRD files (packaging/install/cluster-operator of strimzi-kafka-operator)" >&2
    exit 1
  }
fi
if [ ! -f "$crds/040-Crd-kafka.yaml" ]; then
  echo "deploy-check: the Strimzi CRDs are not at $crds (no 040-Crd-kafka.yaml)" >&2
  exit 1
fi
export STRIMZI_CRDS_DIR="$crds"


echo "== kubernetes manifests (Strimzi CRDs from $crds)"
(cd "$root/deploy/validate" && go test -count=1 ./... && go run . --root "$root")

echo "== Prometheus alerting rules (deploy/prometheus)"
if command -v promtool >/dev/null; then
  (cd "$root/deploy/prometheus" && promtool check rules kmirror-rules.yaml && promtool test rules kmirror-rules.test.yaml keda-query.test.yaml)
else
  echo "promtool not installed (Debian: apt-get install prometheus); rules not checked" >&2
fi

echo "== systemd unit"
if command -v systemd-analyze >/dev/null; then
  # verify wants the binary named in ExecStart to exist: check a copy that points at one that does.
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # The template is checked as one instance of it.
  for unit in kmirror.service kmirror@.service; do
    copy="${unit/@./@check.}"
    sed "s#^ExecStart=/usr/local/bin/kmirror#ExecStart=/bin/true#" "$root/deploy/systemd/$unit" >"$tmp/$copy"
    out="$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$tmp/$copy" 2>&1 || true)"
    # Messages about the host (no running systemd, other units) are not the unit's fault.
    problems="$(printf '%s\n' "$out" | grep -F "$copy" || true)"
    if [ -n "$problems" ]; then
      echo "$problems" >&2
      exit 1
    fi
    echo "systemd-analyze verify: no problems in $unit"
  done
else
  echo "systemd-analyze not installed; unit not verified"
fi

echo "== make install: the unit's user can read what it installs"
"$root/scripts/systemd-check.sh"

echo "== Containerfile"
grep -q '^USER 1001' "$root/Containerfile" && grep -q '^COPY dist/kmirror-' "$root/Containerfile" \
  || { echo "Containerfile must copy the release's static binary (make release) and run as a non-root user" >&2; exit 1; }
if grep -E '^FROM ' "$root/Containerfile" | grep -Ev '^FROM [^ ]+@sha256:([0-9a-f]{64}|PIN-ME)( |$)' | grep -q .; then
  echo "Containerfile: pin every base image by digest" >&2
  exit 1
fi
if grep -q '@sha256:PIN-ME' "$root/Containerfile"; then
  echo "Containerfile: the ubi-micro digest is still the PIN-ME placeholder; a networked builder pins it (docs/releasing.md)"
fi
if command -v buildah >/dev/null && [ -n "${KMIRROR_BUILD_IMAGE:-}" ]; then
  make -C "$root" release-snapshot image
else
  echo "image not built: its base images come from container registries, which this machine cannot reach (set KMIRROR_BUILD_IMAGE=1 where buildah can pull them)"
fi

#!/usr/bin/env bash
# Generates the Strimzi CRDs (kafka.strimzi.io/v1: Kafka, KafkaNodePool, KafkaTopic, KafkaUser,
# KafkaMirrorMaker2) the way Strimzi's own build does: its CRD generator run over its API model,
# both from Maven Central (io.strimzi:api and io.strimzi:crd-generator). The jars go to
# scripts/strimzi/lib/<version>/ and the CRDs to scripts/strimzi/crds/<version>/ (both
# git-ignored), under the file names of Strimzi's packaging/install/cluster-operator/; prints the
# CRDs' directory. A version already generated is not generated again; Maven's ~/.m2 cache keeps
# a re-fetch offline.
#   scripts/strimzi/fetch.sh [VERSION]      (default 1.2.0)
# Strimzi 1.2's jars are Java 21 class files: the generator runs on the first Java 21 or newer
# among $STRIMZI_JAVA, $JAVA_HOME/bin/java, java on the PATH and /usr/lib/jvm/*/bin/java.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="${1:-${STRIMZI_VERSION:-1.2.0}}"
lib="$here/lib/$version"
out="$here/crds/$version"
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi

java_major() { "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p'; }
java=""
for j in "${STRIMZI_JAVA:-}" "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
  [ -n "$j" ] && [ -x "$j" ] || continue
  major="$(java_major "$j")"
  if [ -n "$major" ] && [ "$major" -ge 21 ]; then java="$j"; break; fi
done
[ -n "$java" ] || { echo "fetch.sh: Strimzi's CRD generator needs Java 21 or newer; none found (set STRIMZI_JAVA to its java)" >&2; exit 1; }

if [ ! -f "$lib/.complete" ]; then
  command -v mvn >/dev/null || { echo "fetch.sh: Maven (mvn) is needed to fetch Strimzi's jars from Maven Central" >&2; exit 1; }
  rm -rf "$lib"
  echo "fetching Strimzi $version's API model and CRD generator from Maven Central" >&2
  mvn -q -B -f "$here/pom.xml" -Dstrimzi.version="$version" \
    dependency:copy-dependencies -DoutputDirectory="$lib" -DincludeScope=runtime >&2
  ls "$lib/api-$version.jar" "$lib/crd-generator-$version.jar" >/dev/null
  touch "$lib/.complete"
fi

# YAML, Strimzi's two labels, apiextensions.k8s.io/v1, and kafka.strimzi.io/v1 as the only,
# stored version: with these, 1.2.0 writes the CRDs of Strimzi's packaging/install/cluster-operator
# (all but 040-Crd-kafka.yaml byte for byte; that one differs in a description and in an empty
# `properties: {}` beside x-kubernetes-preserve-unknown-fields in the status).
echo "generating the Strimzi $version CRDs with $java" >&2
tmp="$here/crds/.$version.tmp"
rm -rf "$tmp" && mkdir -p "$tmp"
m=io.strimzi.api.kafka.model
"$java" -cp "$lib/*" io.strimzi.crdgenerator.CrdGenerator \
  --yaml --label app:strimzi --label strimzi.io/crd-install:true \
  --crd-api-version v1 --api-versions v1 --storage-version v1 \
  "$m.kafka.Kafka=$tmp/040-Crd-kafka.yaml" \
  "$m.topic.KafkaTopic=$tmp/043-Crd-kafkatopic.yaml" \
  "$m.user.KafkaUser=$tmp/044-Crd-kafkauser.yaml" \
  "$m.nodepool.KafkaNodePool=$tmp/045-Crd-kafkanodepool.yaml" \
  "$m.mirrormaker2.KafkaMirrorMaker2=$tmp/048-Crd-kafkamirrormaker2.yaml" >&2
for f in 040-Crd-kafka 043-Crd-kafkatopic 044-Crd-kafkauser 045-Crd-kafkanodepool 048-Crd-kafkamirrormaker2; do
  grep -q '^kind: CustomResourceDefinition' "$tmp/$f.yaml" || { echo "fetch.sh: the generator wrote no CRD to $f.yaml" >&2; exit 1; }
done
touch "$tmp/.complete"
rm -rf "$out" && mv "$tmp" "$out"
echo "$out"

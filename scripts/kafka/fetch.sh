#!/usr/bin/env bash
# Fetches Apache Kafka's jars from Maven Central into scripts/kafka/lib/<version>/ and prints
# that directory. Versions: 4.3.1 (default: the newest 4.x of which Maven Central serves every
# artifact we need, MirrorMaker 2 included) and 3.9.2 (the compatibility run). A version whose
# directory is already complete is not fetched again; Maven's ~/.m2 cache also keeps re-fetches
# offline.
#   scripts/kafka/fetch.sh [VERSION]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="${1:-${KAFKA_VERSION:-4.3.1}}"
lib="$here/lib/$version"
if [ -f "$lib/.complete" ]; then
  echo "$lib"
  exit 0
fi
command -v mvn >/dev/null || { echo "fetch.sh: Maven (mvn) is needed to fetch Kafka from Maven Central" >&2; exit 1; }
rm -rf "$lib"
echo "fetching Apache Kafka $version from Maven Central" >&2
mvn -q -B -f "$here/pom.xml" -Dkafka.version="$version" \
  dependency:copy-dependencies -DoutputDirectory="$lib" -DincludeScope=runtime \
  -DexcludeArtifactIds=slf4j-reload4j,slf4j-log4j12,log4j-slf4j-impl,log4j-slf4j2-impl >&2
ls "$lib"/kafka_2.13-"$version".jar >/dev/null
touch "$lib/.complete"
echo "$lib"

#!/usr/bin/env bash
# Builds the Java client with the JDK alone (Java 17+, no Maven, no downloads):
#   clients/java/build.sh            compile, build/payrail-client.jar
#   clients/java/build.sh test       ... then run the tests against a real `payrail serve`
#                                    (PAYRAIL_BIN, default target/debug/payrail)
#   clients/java/build.sh bench ...  ... then run the benchmark (docs/benchmarks.md, "Java client")
# The test runner ends with "N passed, M failed" and exits non-zero on any failure.
set -euo pipefail
# PAYRAIL_BIN may be relative to where this was started.
if [ -n "${PAYRAIL_BIN:-}" ]; then
  PAYRAIL_BIN="$(realpath -m "$PAYRAIL_BIN")"
  export PAYRAIL_BIN
fi
cd "$(dirname "$0")"

if ! command -v javac >/dev/null 2>&1; then
  echo "build.sh: javac not found; scripts/dev-deps.sh installs a JDK (default-jdk-headless)" >&2
  exit 1
fi

# Warnings are shown (-Xlint:all; none with JDK 17) but do not fail the build, so the lints a
# newer JDK adds cannot break it.
rm -rf build/classes build/test-classes
mkdir -p build
javac --release 17 -Xlint:all -encoding UTF-8 -d build/classes $(find src/main/java -name '*.java')
jar --create --file build/payrail-client.jar -C build/classes .

case "${1:-}" in
  "") ;;
  test|bench)
    javac --release 17 -Xlint:all -encoding UTF-8 -cp build/classes -d build/test-classes \
      $(find src/test/java -name '*.java')
    main=payrail.client.TestMain
    [ "$1" = bench ] && main=payrail.client.Bench
    shift
    exec java -cp build/classes:build/test-classes "$main" "$@"
    ;;
  *)
    echo "usage: build.sh [test [NAME_PART...] | bench [ARGS...]]" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# The README's test command: installs what is missing, builds everything and runs every test
# (unit, integration and end-to-end labels alike), then builds the libFuzzer targets with clang
# (build-fuzz/) and runs each for 10 s (scripts/fuzz.sh, docs/fuzzing.md); SKIP_FUZZ=1 leaves
# that out. Extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure -j "$(nproc)" "$@")
if [[ ${SKIP_FUZZ:-0} != 1 ]]; then
  ./scripts/fuzz.sh 10
fi

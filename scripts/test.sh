#!/usr/bin/env bash
# The README's test command: installs what is missing, builds everything and runs every test
# (unit, integration and end-to-end labels alike). Extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j "$(nproc)" "$@"

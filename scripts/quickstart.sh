#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, and runs the bundled
# quickstart experiment in local mode (in-process controller + agent, embedded SQLite store).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
BUILD_TARGET="benchfleet benchfleet-controller benchfleet-agent" ./scripts/build.sh
exec ./build/cli/benchfleet run examples/quickstart.yaml "$@"

#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, docs/fuzzing.md) with clang into
# ${FUZZ_BUILD_DIR:-build-fuzz} and runs each for SECONDS_PER_TARGET (default 30)
# on its seeds (fuzz/corpus/<target>/), with fuzz/dict/<target>.dict where
# there is one. What a run discovers is kept in build-fuzz/corpus/<target>/; a
# crash is written to build-fuzz/crashes/ and makes the script fail. Extra arguments go to every fuzzer (e.g. -jobs=4).
#   scripts/fuzz.sh            30 s per target
#   scripts/fuzz.sh 3600       an hour per target
#   FUZZ_TARGETS="spec history_file" scripts/fuzz.sh 600
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
build_dir=${FUZZ_BUILD_DIR:-build-fuzz}
targets=(${FUZZ_TARGETS:-spec history_file agent_message fleet_request open_order bundle})

launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache); fi
if [[ ! -f $build_dir/build.ninja ]]; then
  CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DBENCHFLEET_FUZZ=ON -DBENCHFLEET_BUILD_TESTS=OFF -DBENCHFLEET_BUILD_BENCH=OFF \
    "${launcher[@]}" >/dev/null
fi
cmake --build "$build_dir" --target fuzz_all

crashes=$build_dir/crashes
mkdir -p "$crashes"
failed=()
for t in "${targets[@]}"; do
  work=$build_dir/corpus/$t
  mkdir -p "$work"
  log=$build_dir/fuzz_$t.log
  dict=()
  if [[ -f fuzz/dict/$t.dict ]]; then dict=(-dict="fuzz/dict/$t.dict"); fi
  echo "benchfleet: fuzzing $t for ${seconds}s (log: $log)" >&2
  if ! "$build_dir/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$crashes/$t-" "${dict[@]}" "$@" \
      "$work" "fuzz/corpus/$t" >"$log" 2>&1; then
    failed+=("$t")
    tail -n 40 "$log" >&2
  fi
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$log" \
    | sed "s/^/  $t /" >&2 || true
done
if ((${#failed[@]})); then
  echo "benchfleet: fuzzing found crashes in: ${failed[*]} (inputs in $crashes/; docs/fuzzing.md says how to reproduce)" >&2
  exit 1
fi

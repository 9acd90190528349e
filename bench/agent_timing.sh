#!/usr/bin/env bash
# The agent as a timing instrument, side by side with a raw posix_spawn+wait4 loop and
# hyperfine -N, on a static no-op program and a ~20 ms CPU-bound program.
#
#   bench/agent_timing.sh BUILD_DIR [NOOP_RUNS] [CPU20_RUNS] [ROUNDS]
#
# BUILD_DIR must contain bench/bf-noop, bench/bf-cpu20 and bench/bf-timing-bench
# (cmake --build BUILD_DIR --target bf-timing-bench). Each program gets NOOP_RUNS (default 1000)
# or CPU20_RUNS (default 100) measured runs per tool, split into ROUNDS (default 20) rounds.
# Fairness: the raw loop and the agent's runner run in one process, back to back for every run
# (alternating which goes first), so they see the same machine state; hyperfine, a separate
# program, alternates with them round by round (20 warmup runs per tool and round). Prints
# markdown (environment + one table per program) on stdout.
set -euo pipefail

build_dir=$(cd "${1:?usage: $0 BUILD_DIR [NOOP_RUNS] [CPU20_RUNS] [ROUNDS]}" && pwd)
noop_runs=${2:-1000}
cpu_runs=${3:-100}
rounds=${4:-20}
warmup=20

bench=$build_dir/bench
tool=$bench/bf-timing-bench
for f in "$tool" "$bench/bf-noop" "$bench/bf-cpu20"; do
  [[ -x $f ]] || { echo "missing $f: build the bf-timing-bench target first" >&2; exit 1; }
done
command -v hyperfine >/dev/null || { echo "hyperfine not found (apt-get install hyperfine)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

load_before=$(cut -d' ' -f1-3 /proc/loadavg)

run_tool() {  # run_tool TOOL NAME RUNS PROGRAM ROUND
  local which=$1 name=$2 runs=$3 program=$4 round=$5
  case $which in
    paired)
      "$tool" paired --runs "$runs" --warmup "$warmup" --out "$work/$name.paired" -- "$program" ;;
    hyperfine)
      hyperfine -N --style none --warmup "$warmup" --runs "$runs" \
        --export-json "$work/$name.hyperfine.$round.json" -- "$program" >/dev/null 2>&1 ;;
  esac
}

measure() {  # measure NAME TOTAL_RUNS PROGRAM [REPORT_FLAGS...]
  local name=$1 total=$2 program=$3
  shift 3
  local per_round=$(( (total + rounds - 1) / rounds ))
  for (( r = 0; r < rounds; r++ )); do
    if (( r % 2 == 0 )); then
      run_tool paired "$name" "$per_round" "$program" "$r"
      run_tool hyperfine "$name" "$per_round" "$program" "$r"
    else
      run_tool hyperfine "$name" "$per_round" "$program" "$r"
      run_tool paired "$name" "$per_round" "$program" "$r"
    fi
  done
  local hf=()
  for f in "$work/$name".hyperfine.*.json; do hf+=(--hyperfine "$f"); done
  "$tool" report --title "$name ($(( per_round * rounds )) runs per tool, $rounds interleaved rounds)" \
    --paired "$work/$name.paired" "${hf[@]}" "$@"
}

start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
noop_table=$(measure bf-noop "$noop_runs" "$bench/bf-noop" --target-ratio 1.05)
cpu_table=$(measure bf-cpu20 "$cpu_runs" "$bench/bf-cpu20" --target-stddev-vs-hyperfine 1)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

governor=$(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null || echo "n/a")
cat <<MD
### Environment

| | |
|---|---|
| date (UTC) | $start |
| CPU | $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs usable |
| kernel | $(uname -sr) |
| libc | $(ldd --version | head -1) |
| governor | $governor |
| hyperfine | $(hyperfine --version) |
| load average (1/5/15 min) before / after | $load_before / $load_after |

$noop_table

$cpu_table
MD

#!/usr/bin/env bash
# The whole agent as a timing instrument: runs bf-noop and bf-cpu20 through `benchfleet run`
# (in-process controller + agent over gRPC on loopback, SQLite store, one step per run) and
# compares the medians the agent stored with a raw posix_spawn+wait4 loop run just before and
# just after on the same program.
#
#   bench/agent_e2e.sh BUILD_DIR [NOOP_RUNS] [CPU20_RUNS]
#
# BUILD_DIR must contain cli/benchfleet and bench/{bf-noop,bf-cpu20,bf-timing-bench}.
# Prints markdown on stdout.
set -euo pipefail
build_dir=$(cd "${1:?usage: $0 BUILD_DIR [NOOP_RUNS] [CPU20_RUNS]}" && pwd)
noop_runs=${2:-1000}
cpu_runs=${3:-100}
cli=$build_dir/cli/benchfleet
tool=$build_dir/bench/bf-timing-bench
for f in "$cli" "$tool" "$build_dir/bench/bf-noop" "$build_dir/bench/bf-cpu20" "$build_dir/bench/bf-gap-loop"; do
  [[ -x $f ]] || { echo "missing $f: build benchfleet and bf-timing-bench first" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export XDG_DATA_HOME=$work/data BENCHFLEET_LOCK_FILE=$work/agent.lock
touch "$work/input"

raw_median() {  # raw_median PROGRAM RUNS -> median ns
  "$tool" raw --runs "$2" --warmup 20 -- "$1" | sed -n 's/.*median=\([0-9]*\) ns.*/\1/p'
}

agent_stats() {  # agent_stats NAME PROGRAM RUNS -> "median_ns cv n steps seconds"
  local name=$1 program=$2 runs=$3
  cat >"$work/$name.yaml" <<SPEC
apiVersion: benchfleet/v1
kind: Experiment
name: agent-e2e-$name
benchmark:
  argv: [$program]
  inputs: [{name: none, path: input}]
  warmup: 20
  runs: $runs
  max_runs: $runs
  order: sequential
correctness: {compare: none}
variants: [{name: a}, {name: b}]
verdict: {max_cv: 1000%}
SPEC
  local start end
  start=$(date +%s.%N)
  "$cli" --json run "$work/$name.yaml" 2>/dev/null >"$work/$name.json"
  end=$(date +%s.%N)
  python3 - "$work/$name.json" "$start" "$end" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
row = j["report"]["candidates"][0]["inputs"][0]
steps = j["report"]["steps_run"]
print(row["baseline_median"], row["baseline_cv"], row["n_baseline"], steps,
      float(sys.argv[3]) - float(sys.argv[2]))
PY
}

echo "| | |"
echo "|---|---|"
echo "| date (UTC) | $(date -u +%Y-%m-%dT%H:%M:%SZ) |"
echo "| CPU | $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs |"
echo "| kernel | $(uname -sr) |"
echo "| load before | $(cut -d' ' -f1-3 /proc/loadavg) |"
echo
echo "| program | runs | raw median before | agent end-to-end median | raw median after | agent / mean raw | agent CV | steps/s through the agent |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for spec in "noop:$build_dir/bench/bf-noop:$noop_runs" "cpu20:$build_dir/bench/bf-cpu20:$cpu_runs"; do
  IFS=: read -r name program runs <<<"$spec"
  before=$(raw_median "$program" "$runs")
  read -r median cv n steps seconds < <(agent_stats "$name" "$program" "$runs")
  after=$(raw_median "$program" "$runs")
  python3 - "$name" "$runs" "$before" "$median" "$after" "$cv" "$steps" "$seconds" <<'PY'
import sys
name, runs, before, median, after, cv, steps, seconds = sys.argv[1:]
before, median, after, cv, steps, seconds = map(float, (before, median, after, cv, steps, seconds))
unit, div = ("µs", 1e3) if name == "noop" else ("ms", 1e6)
raw = (before + after) / 2
print(f"| bf-{name} | {runs} | {before/div:.1f} {unit} | {median/div:.1f} {unit} | {after/div:.1f} {unit} "
      f"| {median/raw:.3f} | {cv*100:.1f} % | {steps/seconds:.0f} |")
PY
done
echo
echo "An idle gap before each run, in a raw loop on bf-noop (no benchfleet involved):"
echo
echo "| gap before each run | median |"
echo "|---:|---:|"
for gap in 0 200 500 2000 0 200 500 2000; do
  "$build_dir/bench/bf-gap-loop" "$gap" "$noop_runs" "$build_dir/bench/bf-noop" |
    sed -n 's/gap=\([0-9]*\)us runs=[0-9]* median=\([0-9]*\) ns/| \1 µs | \2 ns |/p'
done
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

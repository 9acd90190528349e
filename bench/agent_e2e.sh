#!/usr/bin/env bash
# The whole product as a timing instrument (docs/perf/agent-timing.md, "Back to back"): per
# repeat and per program, a raw posix_spawn+wait4 loop, `benchfleet run` (in-process
# controller + agent over gRPC on loopback, SQLite store, pipelined step orders) and
# `hyperfine -N`, one after the other on the same program, the order reversed every other
# repeat. benchfleet's per-run times are read back from its store (step_results.wall_ns of the
# measured runs of both variants, which run the same program). Then, per repeat, a 110-step
# experiment of 50 ms sleeps: its wall time and how much of it the agent spent in host gates.
#
#   bench/agent_e2e.sh BUILD_DIR [NOOP_RUNS] [CPU20_RUNS] [REPEATS]
#
# Defaults: 1000 no-op runs, 300 cpu20 runs, 3 repeats. Each tool makes that many measured
# runs per program (benchfleet: half per variant) after 20 unmeasured ones (benchfleet: 10 per
# variant). The spec's gates are {cooldown: 0s} and the agent keeps its default gates (no
# other process above 0.25 cores before a run; the spec's default max_load 0.3 before the
# first step). BF_E2E_GATES replaces the spec's gates (to try the script out on a busy host,
# e.g. "{cooldown: 0s, max_load: 50, max_wait: 5m}"; not for figures), BF_E2E_RUN_TIMEOUT
# (seconds, default 1200) bounds a whole `benchfleet run`. BUILD_DIR must contain cli/benchfleet and
# bench/{bf-noop,bf-cpu20,bf-timing-bench}. Prints markdown on stdout, progress on stderr.
set -euo pipefail
usage="usage: $0 BUILD_DIR [NOOP_RUNS] [CPU20_RUNS] [REPEATS]"
build_dir=$(cd "${1:?$usage}" && pwd)
noop_runs=${2:-1000}
cpu_runs=${3:-300}
repeats=${4:-3}
for n in "$noop_runs" "$cpu_runs"; do
  ((n >= 2 && n % 2 == 0)) || { echo "run counts must be even and >= 2: $usage" >&2; exit 2; }
done
cli=$build_dir/cli/benchfleet
tool=$build_dir/bench/bf-timing-bench
for f in "$cli" "$tool" "$build_dir/bench/bf-noop" "$build_dir/bench/bf-cpu20"; do
  [[ -x $f ]] || { echo "missing $f: build benchfleet and bf-timing-bench first" >&2; exit 1; }
done
command -v hyperfine >/dev/null || { echo "hyperfine not found (apt-get install hyperfine)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export XDG_DATA_HOME=$work/data BENCHFLEET_LOCK_FILE=$work/agent.lock
store=$XDG_DATA_HOME/benchfleet/local.db
touch "$work/input"
for i in 1 2 3 4 5; do touch "$work/in$i"; done
gates=${BF_E2E_GATES:-"{cooldown: 0s}"}
load1() { cut -d' ' -f1 /proc/loadavg; }
log() { echo "[$(date -u +%H:%M:%S) load $(load1)] $*" >&2; }

raw_loop() {  # raw_loop OUT PROGRAM RUNS: one wall time (ns) per line
  "$tool" raw --runs "$3" --warmup 20 --out "$1" -- "$2" >/dev/null
}

hyperfine_loop() {  # hyperfine_loop OUT PROGRAM RUNS: one wall time (ns) per line
  hyperfine -N --style none --warmup 20 --runs "$3" --export-json "$1.json" -- "$2" >/dev/null 2>&1
  python3 -c 'import json,sys
for t in json.load(open(sys.argv[1]))["results"][0]["times"]: print(round(t * 1e9))' "$1.json" >"$1"
}

# benchfleet_run OUT NAME PROGRAM RUNS: runs the experiment, writes "wall_ns host_flags kind"
# per warmup and measured run of both variants (from the store) to OUT, and
# "wall_s steps gate_wait_ns reruns verdicts" plus one "wait NS STEP<tab>BLOCKED_BY" line per gate wait
# to OUT.meta.
benchfleet_run() {
  local out=$1 name=$2 program=$3 runs=$4
  cat >"$work/$name.yaml" <<SPEC
apiVersion: benchfleet/v1
kind: Experiment
name: $name
benchmark:
  argv: [$program]
  inputs: [{name: none, path: input}]
  warmup: 10
  runs: $((runs / 2))
  max_runs: $((runs / 2))
  allow_underpowered: true
correctness: {compare: none}
variants: [{name: a}, {name: b}]
verdict: {max_cv: 1000%}
gates: $gates
SPEC
  run_spec "$out" "$name"
}

run_spec() {  # run_spec OUT NAME: runs $work/NAME.yaml, extracts runs and report figures
  local out=$1 name=$2 start end
  start=$(date +%s%N)
  # Bounded: an attempt the agent ends as "host not ready" leaves `benchfleet run` waiting.
  timeout "${BF_E2E_RUN_TIMEOUT:-1200}" "$cli" --json run "$work/$name.yaml" \
    2>"$work/$name.stderr" >"$work/$name.json" || {
    echo "benchfleet run $name failed or timed out:" >&2; cat "$work/$name.stderr" >&2
    python3 - "$store" "$name" >&2 <<'PY' || true
import sqlite3, sys
for row in sqlite3.connect(sys.argv[1]).execute(
    "SELECT r.step_seq, r.kind, r.gate_wait_ns, r.error FROM step_results r"
    " JOIN attempts a ON a.id = r.attempt_id JOIN experiments e ON e.id = a.experiment_id"
    " WHERE e.name = ? AND r.error <> '' ORDER BY r.step_seq LIMIT 5", (sys.argv[2],)):
    print("  step", *row)
PY
    exit 1; }
  end=$(date +%s%N)
  python3 - "$store" "$name" "$work/$name.json" "$start" "$end" "$out" <<'PY'
import json, sqlite3, sys
store, name, report_file, start, end, out = sys.argv[1:]
db = sqlite3.connect(store)
rows = db.execute(
    "SELECT r.wall_ns, r.host_flags, r.kind FROM step_results r"
    " JOIN attempts a ON a.id = r.attempt_id JOIN experiments e ON e.id = a.experiment_id"
    " WHERE e.name = ? AND r.kind IN ('warmup', 'measure') AND r.exit_code = 0"
    " AND r.error = ''"
    " ORDER BY r.attempt_id, r.step_seq", (name,)).fetchall()
with open(out, "w") as f:
    for wall_ns, flags, kind in rows:
        flags = json.loads(flags) if flags.startswith("[") else [x for x in flags.split(",") if x]
        f.write(f"{wall_ns} {','.join(flags) or '-'} {kind}\n")
rep = json.load(open(report_file))["report"]
with open(out + ".meta", "w") as f:
    f.write(f"{(int(end) - int(start)) / 1e9} {rep['steps_run']} {rep['gate_wait_ns']}"
            f" {rep['reruns']} {','.join(c['verdict'] for c in rep['candidates']) or '-'}\n")
    for w in rep.get("gate_waits", []):
        f.write(f"wait {w['wait_ns']} {w['step']}\t{w['blocked_by']}\n")
PY
}

sleep_experiment() {  # sleep_experiment OUT NAME: 110 steps of `sleep 0.05`
  cat >"$work/$2.yaml" <<SPEC
apiVersion: benchfleet/v1
kind: Experiment
name: $2
benchmark:
  argv: [/bin/sleep, "0.05"]
  inputs:
    - {name: in1, path: in1}
    - {name: in2, path: in2}
    - {name: in3, path: in3}
    - {name: in4, path: in4}
    - {name: in5, path: in5}
  warmup: 1
  runs: 10
  max_runs: 10
correctness: {compare: none}
variants: [{name: a}, {name: b}]
verdict: {max_cv: 1000%}
gates: $gates
SPEC
  run_spec "$1" "$2"
}

env_before=$(cut -d' ' -f1-3 /proc/loadavg)
date_start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for ((rep = 1; rep <= repeats; rep++)); do
  if ((rep % 2)); then order="raw benchfleet hyperfine"; else order="hyperfine benchfleet raw"; fi
  echo "$(load1)" >"$work/r$rep.load_before"
  for spec in "noop:$build_dir/bench/bf-noop:$noop_runs" "cpu20:$build_dir/bench/bf-cpu20:$cpu_runs"; do
    IFS=: read -r name program runs <<<"$spec"
    for t in $order; do
      log "repeat $rep/$repeats $name: $t ($runs runs)"
      case $t in
        raw) raw_loop "$work/r$rep.$name.raw" "$program" "$runs" ;;
        hyperfine) hyperfine_loop "$work/r$rep.$name.hyperfine" "$program" "$runs" ;;
        benchfleet) benchfleet_run "$work/r$rep.$name.benchfleet" "e2e-$name-r$rep" "$program" "$runs" ;;
      esac
    done
  done
  log "repeat $rep/$repeats: 110-step sleep experiment"
  sleep_experiment "$work/r$rep.sleep" "e2e-sleep-r$rep"
  echo "$order" >"$work/r$rep.order"
  echo "$(load1)" >"$work/r$rep.load_after"
done
env_after=$(cut -d' ' -f1-3 /proc/loadavg)

cat <<ENV
### Environment

| | |
|---|---|
| date (UTC) | $date_start → $(date -u +%H:%M:%SZ) |
| CPU | $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs (nproc) |
| kernel | $(uname -sr) |
| governor | $(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null || echo n/a) |
| hyperfine | $(hyperfine --version) |
| benchfleet | $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown) |
| runs per tool | bf-noop $noop_runs, bf-cpu20 $cpu_runs (20 unmeasured first); $repeats repeats |
| load average (1/5/15 min) before / after | $env_before / $env_after |

ENV
python3 - "$work" "$repeats" <<'PY'
import statistics as st, sys
work, repeats = sys.argv[1], int(sys.argv[2])

def col(path, kinds=("measure",)):
    """wall ns per line; benchfleet files: only runs of these kinds."""
    rows = [line.split() for line in open(path) if line.strip()]
    return [int(r[0]) for r in rows if len(r) < 3 or r[2] in kinds]

def flags(path):
    rows = [line.split() for line in open(path) if line.strip()]
    return [r[1] != "-" for r in rows if r[2] == "measure"]

def stats(xs):
    med = st.median(xs)
    return {"n": len(xs), "median": med, "mean": st.fmean(xs), "stddev": st.stdev(xs),
            "mad": st.median(abs(x - med) for x in xs), "min": min(xs)}

def fmt(v, div, digits):
    return f"{v / div:.{digits}f}"

def load(rep):
    return f"{open(f'{work}/r{rep}.load_before').read().strip()} → {open(f'{work}/r{rep}.load_after').read().strip()}"

def order(rep):
    return open(f"{work}/r{rep}.order").read().strip().replace(" ", " → ")

def table(name, unit, div, digits):
    print(f"#### bf-{name}: median / stddev / MAD ({unit}) per tool\n")
    print("| repeat | order | load 1 min before → after | raw median | benchfleet median | hyperfine median "
          "| raw stddev | benchfleet stddev | hyperfine stddev | raw MAD | benchfleet MAD | hyperfine MAD "
          "| benchfleet n (host-flagged) | A/A verdict | `benchfleet run` wall / gate wait (s) | benchfleet / raw (median) | benchfleet / hyperfine (median) "
          "| benchfleet / hyperfine (stddev) |")
    print("|---|---|---|" + "---:|" * 10 + "---|---:|" + "---:|" * 3)
    out = []
    for rep in range(1, repeats + 1):
        base = f"{work}/r{rep}.{name}"
        raw, bf, hf = stats(col(base + ".raw")), stats(col(base + ".benchfleet")), stats(col(base + ".hyperfine"))
        nflag = sum(flags(base + ".benchfleet"))
        m = open(base + ".benchfleet.meta").readline().split()
        verdict_ab, run_wall_s, run_gate_s = m[4], float(m[0]), int(m[2]) / 1e9
        f = lambda s, k: fmt(s[k], div, digits)
        print(f"| {rep} | {order(rep)} | {load(rep)} | {f(raw,'median')} | {f(bf,'median')} | {f(hf,'median')} "
              f"| {f(raw,'stddev')} | {f(bf,'stddev')} | {f(hf,'stddev')} | {f(raw,'mad')} | {f(bf,'mad')} | {f(hf,'mad')} "
              f"| {bf['n']} ({nflag}) | {verdict_ab} | {run_wall_s:.1f} / {run_gate_s:.1f} | {bf['median']/raw['median']:.3f} | {bf['median']/hf['median']:.3f} "
              f"| {bf['stddev']/hf['stddev']:.3f} |")
        out.append((raw, bf, hf))
    print()
    return out

noop = table("noop", "µs", 1e3, 1)
cpu = table("cpu20", "ms", 1e6, 3)

print("#### Targets per repeat\n")
print("| repeat | no-op: benchfleet / raw median ≤ 1.03 | no-op: benchfleet / hyperfine median ≤ 1 "
      "| cpu20: benchfleet stddev ≤ hyperfine stddev |")
print("|---|---|---|---|")
def verdict(ok): return "**met**" if ok else "**missed**"
for rep in range(1, repeats + 1):
    (nraw, nbf, nhf), (craw, cbf, chf) = noop[rep - 1], cpu[rep - 1]
    r1, r2 = nbf["median"] / nraw["median"], nbf["median"] / nhf["median"]
    print(f"| {rep} | {r1:.3f} {verdict(r1 <= 1.03)} | {r2:.3f} {verdict(r2 <= 1.0)} "
          f"| {cbf['stddev']/1e6:.3f} vs {chf['stddev']/1e6:.3f} ms {verdict(cbf['stddev'] <= chf['stddev'])} |")
print()

print("#### 110-step experiment of 50 ms sleeps (5 inputs × 2 variants × (1 warmup + 10 runs))\n")
print("| repeat | steps (re-runs) | verdict | wall time of `benchfleet run` | sum of the runs' wall_ns | gate wait | gate wait / wall | gate waits (count) | what blocked (longest first) |")
print("|---|---:|---|---:|---:|---:|---:|---:|---|")
for rep in range(1, repeats + 1):
    base = f"{work}/r{rep}.sleep"
    meta = open(base + ".meta").read().splitlines()
    wall_s, steps, gate_ns, reruns, verdicts = meta[0].split()
    wall_s, gate_ns = float(wall_s), int(gate_ns)
    waits = []
    for line in meta[1:]:
        head, blocked = line.split("\t", 1)
        _, ns, step = head.split(" ", 2)
        waits.append((int(ns), step, blocked))
    waits.sort(reverse=True)
    shown = "; ".join(f"{ns/1e6:.0f} ms before {step}: {b or '(not said)'}" for ns, step, b in waits[:3]) or "—"
    measured = sum(col(base, ("warmup", "measure"))) / 1e9
    print(f"| {rep} | {steps} ({reruns}) | {verdicts} | {wall_s:.2f} s | {measured:.2f} s | {gate_ns/1e9:.3f} s "
          f"| {100*gate_ns/1e9/wall_s:.2f} % | {len(waits)} | {shown} |")
print()
PY

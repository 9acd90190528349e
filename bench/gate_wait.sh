#!/usr/bin/env bash
# How long the agent's gates hold an experiment on a quiet host (docs/perf/gates.md): runs
# `benchfleet run` (local mode: in-process controller + agent + SQLite) on a spec of 110
# steps of `sleep 0.05` (5 inputs x 2 variants x (1 warmup + 10 runs); gates: cooldown 0s,
# max_wait 2m) and prints one markdown row per run: the gates' waits from the stored step
# results (all of them; the attempt's first step, where the load and cooldown gates apply; the
# 109 others, which check competing CPU before every run; how many steps waited at all), the
# attempt's wall time (its start to its end, as the controller records them) and the gates'
# share of it.
#
#   bench/gate_wait.sh [--quiet-below PCT] [--max-load L] [--runs N] BENCHFLEET...
#
# Each BENCHFLEET is a `benchfleet` binary (e.g. a build before and after a change); the runs
# alternate between them. Each run starts only once the whole host's CPU use has stayed below
# PCT % (default 3) for 5 s (checked for at most an hour), since competing CPU is exactly what
# the gates wait for; the row shows the host's CPU use during the run, our own included, so a
# run that others disturbed can be told apart. --max-load L puts `max_load: L` in the spec's
# gates (default: the spec default, 0.3): on a shared machine the attempt-start load gate
# otherwise waits for the load average of others' earlier work to decay, which says nothing
# about the per-run gates. Needs python3. Data goes to a temporary directory.
set -euo pipefail

quiet_below=3
max_load=
runs=2
bins=()
while (($#)); do
  case $1 in
    --quiet-below) quiet_below=$2; shift 2 ;;
    --max-load) max_load=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) bins+=("$(realpath "$1")"); shift ;;
  esac
done
((${#bins[@]})) || { echo "usage: $0 [--quiet-below PCT] [--max-load L] [--runs N] BENCHFLEET..." >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/spec/inputs"
for i in 1 2 3 4 5; do echo "$i" > "$work/spec/inputs/in$i"; done
gates="{cooldown: 0s, max_wait: 2m${max_load:+, max_load: $max_load}}"
cat > "$work/spec/spec.yaml" <<SPEC
apiVersion: benchfleet/v1
kind: Experiment
name: gate-wait
benchmark:
  command: "sleep 0.05"
  inputs:
    - {name: in1, path: inputs/in1}
    - {name: in2, path: inputs/in2}
    - {name: in3, path: inputs/in3}
    - {name: in4, path: inputs/in4}
    - {name: in5, path: inputs/in5}
  warmup: 1
  runs: 10
  max_runs: 10
variants:
  - {name: baseline}
  - {name: other, command: "sleep 0.05"}
verdict: {max_cv: 1000%}
gates: $gates
SPEC

cpu_ticks() {  # busy total, from the aggregate line of /proc/stat
  awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9; exit}' /proc/stat
}

busy_pct_over() {  # busy_pct_over SECONDS: the host's CPU use meanwhile, in %
  local a b
  a=($(cpu_ticks)); sleep "$1"; b=($(cpu_ticks))
  echo $(( 100 * (b[0] - a[0]) / (b[1] - a[1] > 0 ? b[1] - a[1] : 1) ))
}

wait_quiet() {
  local deadline=$((SECONDS + 3600)) pct
  while :; do
    pct=$(busy_pct_over 5)
    ((pct < quiet_below)) && return 0
    ((SECONDS > deadline)) && { echo "the host never got quiet (last: $pct % busy)" >&2; return 1; }
    echo "waiting for a quiet host: $pct % busy over 5 s" >&2
  done
}

echo "| run | binary | gates waited | first step | the other steps | steps that waited | attempt wall | gates / wall | host CPU during the run | load1 before | result |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
n=0
for ((r = 0; r < runs; r++)); do
  for bin in "${bins[@]}"; do
    n=$((n + 1))
    wait_quiet
    data=$work/data.$n
    load1=$(cut -d' ' -f1 /proc/loadavg)
    a=($(cpu_ticks))
    t0=$(date +%s.%N)
    XDG_DATA_HOME=$data BENCHFLEET_LOCK_FILE=$work/agent.lock \
      "$bin" --json run "$work/spec/spec.yaml" > "$work/out.$n.json" 2> "$work/err.$n" || true
    t1=$(date +%s.%N)
    b=($(cpu_ticks))
    host_pct=$(( 100 * (b[0] - a[0]) / (b[1] - a[1] > 0 ? b[1] - a[1] : 1) ))
    python3 - "$work/out.$n.json" "$data/benchfleet/local.db" "$bin" "$t0" "$t1" "$host_pct" \
        "$load1" "$n" <<'PY'
import json, sqlite3, sys
path, db, binary, t0, t1, host, load1, n = sys.argv[1:]
wall = float(t1) - float(t0)
try:
    d = json.load(open(path))
except Exception as e:
    d = {"state": f"no output ({e})"}
report = d.get("report") or {}
attempts = d.get("attempt_list") or []
if attempts and int(attempts[0].get("ended_at_unix_ms", 0)) > 0:
    wall = (int(attempts[0]["ended_at_unix_ms"]) - int(attempts[0]["started_at_unix_ms"])) / 1e3
try:
    waits = [w for (w,) in sqlite3.connect(db).execute(
        "SELECT gate_wait_ns FROM step_results ORDER BY attempt_id, step_seq")]
except sqlite3.Error:
    waits = []
total = sum(waits) / 1e9
first = waits[0] / 1e9 if waits else 0.0
rest = sum(waits[1:]) / 1e9
waited = sum(1 for w in waits if w > 0)
result = f"{d.get('state')}, {len(waits)} steps, {report.get('reruns', 0)} re-runs"
print(f"| {n} | {binary} | {total:.3f} s | {first:.3f} s | {rest:.3f} s | {waited} | "
      f"{wall:.2f} s | {100 * total / wall:.1f} % | {host} % | {load1} | {result} |", flush=True)
PY
  done
done

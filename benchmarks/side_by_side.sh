#!/usr/bin/env bash
# Two builds of the engine measured at the same time, on the same core, against their own null
# servers on the other core: what the host does to one it does to the other, so a change of ~1 %
# in events per CPU-second shows (two identical builds differ by 0.05-0.5 % here), where separate
# runs on a shared VM move by 10-20 % from round to round.
#   benchmarks/side_by_side.sh DIR_A DIR_B [PASSES] [STREAMS]
# DIR_A, DIR_B: folders that each hold an `agentperf_native` package (e.g. a copy of the
# installed one with another build's _core*.so dropped in). Prints, per pass, each build's events
# per client CPU-second and delivered share (`microbench`, HTTP/1.1, spread arrivals, 20 ms gaps).
set -euo pipefail
a=${1:?usage: side_by_side.sh DIR_A DIR_B [PASSES] [STREAMS]}
b=${2:?usage: side_by_side.sh DIR_A DIR_B [PASSES] [STREAMS]}
passes=${3:-3}
streams=${4:-500}
python=${PYTHON:-$(dirname "$0")/../.venv/bin/python}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for p in $(seq 1 "$passes"); do
  for dir in "$a" "$b"; do
    name=$(basename "$dir")
    PYTHONPATH=$dir "$python" -m agentperf_native.cli microbench --streams "$streams" --itl 20ms --duration 15s \
      --server-cpu 1 --client-cpu 0 --out "$out/$name-$p" >"$out/$name-$p.log" 2>&1 &
  done
  wait
  for dir in "$a" "$b"; do
    name=$(basename "$dir")
    "$python" - "$out/$name-$p/microbench.json" "$p" "$name" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["runs"][0]
print(f"pass {sys.argv[2]} {sys.argv[3]}: {run['events_per_cpu_s']:,.0f} events/CPU-s, "
      f"{run['delivered_share']:.1%} delivered")
PY
  done
done

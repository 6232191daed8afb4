#!/usr/bin/env bash
# Every row of BENCHMARKS.md's table, measured ROUNDS times (default 3), into OUT:
#   benchmarks/targets.sh OUT [ROUNDS]
# then `python3 benchmarks/summarize.py OUT` prints the table's medians and spreads.
# Release build, as BENCHMARKS.md says: cargo build --release -p ecsd -p ecs-bench
set -euo pipefail
out="$1"; rounds="${2:-3}"
B="${BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/ecsd-target}/release}/ecs-bench"
mkdir -p "$out"
run() { local name="$1"; shift; echo "== $name: ecs-bench cluster --nodes 3 $*" >&2; "$B" cluster --nodes 3 "$@" --json "$out/$name.json" > "$out/$name.log" 2>&1 || { echo "FAILED: $name (see $out/$name.log)" >&2; return 1; }; }
for r in $(seq 1 "$rounds"); do
  run "tag-$r"      --peer moto --workload write --op tag --duration 20
  run "write-$r"    --peer moto --workload write --duration 20
  run "read-$r"     --peer moto --workload read --duration 20
  run "1client-$r"  --peer moto --workload write --concurrency 1 --duration 20
  run "placement-$r" --workload placement --instances 1000 --concurrency 16 --duration 20
done
run "write-60s" --workload write --duration 60
run "failover"  --workload failover --repeat 20 --concurrency 16

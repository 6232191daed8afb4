#!/usr/bin/env bash
# A CPU profile of the three nodes and ecs-bench under one workload (release build):
#   benchmarks/profile.sh OUT.txt [ecs-bench cluster options...]
#   e.g. benchmarks/profile.sh profile-write.txt --workload write --duration 30
# It starts `ecs-bench cluster --nodes 3 ...`, waits past the warm-up, records 8 s with
# `perf record --call-graph dwarf` of every ecsd process and ecs-bench, and writes the
# inclusive shares (>= 2 %) per function, with the samples per process, to OUT.txt.
set -euo pipefail
out="$1"; shift
bin="${BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/ecsd-target}/release}"
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
work="$(mktemp -d)"
"$bin/ecs-bench" cluster --nodes 3 "$@" > "$work/bench.log" 2>&1 &
bench=$!
trap 'kill $bench 2>/dev/null || true; rm -rf "$work"' EXIT
sleep 12   # the cluster's start and the 5 s warm-up
pids="$(pgrep -d, -x ecsd),$bench"
perf record -q -e cpu-clock -F 99 --call-graph dwarf,16384 -p "$pids" -o "$work/perf.data" -- sleep 8 2>/dev/null
wait $bench || true
{
  echo "# perf profile: ecs-bench cluster --nodes 3 $*"
  echo "# perf record -e cpu-clock -F 99 --call-graph dwarf,16384 -p <the ecsd pids and ecs-bench ($bench)> -- sleep 8"
  echo "# samples per process:"
  perf report -i "$work/perf.data" --no-children --sort pid --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' | sed 's/^/#   /'
  echo "# inclusive share (children) per function, >= 2 %:"
  perf report -i "$work/perf.data" --children --sort symbol --stdio --percent-limit 2 -g none 2>/dev/null | grep -E '^ +[0-9.]+%'
  echo "# ecs-bench's output:"
  sed 's/^/#   /' "$work/bench.log"
} > "$out"
echo "profile written to $out"

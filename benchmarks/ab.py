#!/usr/bin/env python3
"""Measures two builds of ecsd against each other, in alternation, in one sitting.

Usage: benchmarks/ab.py --a DIR --b DIR [--rounds N] [--out DIR] [--metric M] -- <ecs-bench cluster options>
  DIR: a directory that holds an `ecsd` binary (a copy of a release build); ecs-bench is the
       one of --bench (default: $CARGO_TARGET_DIR/release/ecs-bench), the same for both.
  M:   throughput_per_s (default) or p50_ms (the latency's median, for --concurrency 1).
  e.g. benchmarks/ab.py --a /tmp/A --b /tmp/B --rounds 4 -- --workload write --op tag --duration 20

Each round runs both builds, in the order A B, then B A (ABBA), so a drift over the sitting favours
neither; every run starts its own three-node cluster. It prints each run, the medians and B over A.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def metric_of(report, metric):
    if metric == "p50_ms":
        return report["latency"]["p50_ms"]
    return report[metric]


def main():
    args, rest = argparse.ArgumentParser(), sys.argv[1:]
    if "--" in rest:
        cut = rest.index("--")
        rest, bench_args = rest[:cut], rest[cut + 1:]
    else:
        bench_args = []
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/ecsd-target"))
    args.add_argument("--a", required=True)
    args.add_argument("--b", required=True)
    args.add_argument("--bench", default=os.path.join(target, "release", "ecs-bench"))
    args.add_argument("--rounds", type=int, default=4)
    args.add_argument("--metric", default="throughput_per_s")
    args.add_argument("--out", default=None)
    opts = args.parse_args(rest)
    out = opts.out or tempfile.mkdtemp(prefix="ecsd-ab-")
    os.makedirs(out, exist_ok=True)
    runs = {"A": [], "B": []}
    for r in range(opts.rounds):
        for name in (["A", "B"] if r % 2 == 0 else ["B", "A"]):
            build = opts.a if name == "A" else opts.b
            path = os.path.join(out, f"{name}-{r + 1}.json")
            with open(os.path.join(out, f"{name}-{r + 1}.log"), "w") as log:
                subprocess.run([opts.bench, "cluster", "--nodes", "3", "--ecsd", os.path.join(build, "ecsd"),
                                *bench_args, "--json", path], check=True, stdout=log, stderr=subprocess.STDOUT)
            with open(path) as f:
                report = json.load(f)["ecsd"]
            if report.get("errors"):
                raise SystemExit(f"{name} round {r + 1}: {report['errors']} errors: {report.get('first_error')}")
            runs[name].append(metric_of(report, opts.metric))
            print(f"round {r + 1} {name}: {runs[name][-1]:10.2f} {opts.metric}", flush=True)
    a, b = statistics.median(runs["A"]), statistics.median(runs["B"])
    print(f"medians: A {a:.2f}, B {b:.2f}, B/A {b / a:.3f} ({opts.metric}; runs in {out})")


if __name__ == "__main__":
    main()

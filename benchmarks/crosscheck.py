#!/usr/bin/env python3
"""Checks ecs-bench against an independent load generator (wrk, written in C) on one cluster.

Usage: benchmarks/crosscheck.py [--bin DIR] [--rounds N] [--duration S] [--connections C] [OP ...]
  OP: tag, taskdef, scale, mix (writes) or clusters (linearizable DescribeClusters); default: tag clusters;
      or health: wrk alone on GET /health, the ceiling of one HTTP request on this machine (no
      parsing, no Raft, no state), to bound what any ECS action can reach
  DIR: where ecsd and ecs-bench are (default: $CARGO_TARGET_DIR/release)

For each OP and round it runs the two in turn (ABBA, so a drift over the sitting favours
neither), each on three `ecsd serve` nodes started for that run on loopback ports the OS picks
(fsync on, as always) and set up by ecs-bench:
- `ecs-bench run --concurrency C` (its lean client, round robin over the three nodes), and
- three wrk processes at once, one per node, C/3 keep-alive connections each, sending the same
  requests (`benchmarks/ecs.lua`, fed the bodies ecs-bench sends).
Both warm up for 5 s. It prints each run, the medians and wrk's figure over ecs-bench's, and
exits 1 if any OP's medians differ by more than 10 %. Non-2xx answers are not counted as done.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import cli_smoke as smoke  # noqa: E402 - the cluster and its processes

AUTH = "AWS4-HMAC-SHA256 Credential=AKIDBENCH/20261128/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=0"


def call(endpoint, action, body):
    request = urllib.request.Request(endpoint + "/", json.dumps(body).encode(), {
        "X-Amz-Target": "AmazonEC2ContainerServiceV20141113." + action,
        "Content-Type": "application/x-amz-json-1.1", "Authorization": AUTH})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.load(r)


def requests_of(op, arn):
    """The (action, body) lines ecs-bench's workload sends for OP, in its order."""
    taskdef = [("RegisterTaskDefinition", {"family": f"bench-{k}", "containerDefinitions": [
        {"name": "c", "image": "x", "memory": 8}]}) for k in range(16)]
    tag = [("TagResource", {"resourceArn": arn, "tags": [{"key": f"k{k % 40}", "value": str(k)}]}) for k in range(400)]
    scale = [("UpdateService", {"cluster": "bench", "service": "bench-svc", "desiredCount": n}) for n in range(2)]
    if op == "clusters":
        return [("DescribeClusters", {"clusters": ["bench"]})]
    if op == "mix":
        return [[taskdef, tag, scale][i % 3][i % len([taskdef, tag, scale][i % 3])] for i in range(1200)]
    return {"tag": tag, "taskdef": taskdef, "scale": scale}[op]


def bench_run(args, op, out):
    workload = ["--workload", "read"] if op == "clusters" else ["--workload", "write", "--op", op]
    cmd = [os.path.join(args.bin, "ecs-bench"), "--endpoints", ",".join(smoke.ENDPOINTS), "run", *workload,
           "--concurrency", str(args.connections), "--duration", str(args.duration), "--warmup", "5", "--json", out]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        report = json.load(f)["ecsd"]
    if report["errors"]:
        raise SystemExit(f"ecs-bench {op}: {report['errors']} errors: {report.get('first_error')}")
    return report["throughput_per_s"]


def wrk_run(args, op, lines_file, duration):
    per_node = max(1, args.connections // len(smoke.ENDPOINTS))
    env = dict(os.environ, ECS_REQUESTS=lines_file or "")
    script = ["-s", os.path.join(ROOT, "benchmarks", "ecs.lua")] if lines_file else []
    path = "/" if lines_file else "/health"
    procs = [subprocess.Popen(["wrk", "-t1", f"-c{per_node}", f"-d{duration}s", "--latency", *script, e + path],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for e in smoke.ENDPOINTS]
    total = 0.0
    for p in procs:
        text = p.communicate()[0]
        done = re.search(r"(\d+) requests in ([\d.]+)s", text)
        if p.returncode != 0 or not done:
            raise SystemExit(f"wrk failed:\n{text}")
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        if bad:
            raise SystemExit(f"wrk {op}: {bad.group(1)} non-2xx answers")
        total += int(done.group(1)) / float(done.group(2))
    return total


def main():
    parser = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/ecsd-target"))
    parser.add_argument("--bin", default=os.path.join(target, "release"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connections", type=int, default=66)
    parser.add_argument("ops", nargs="*", default=["tag", "clusters"])
    args = parser.parse_args()
    smoke.BINARY = os.path.join(args.bin, "ecsd")
    data = tempfile.mkdtemp(prefix="ecsd-crosscheck-")
    worst = 0.0
    for op in args.ops:
        if op == "health":
            ceiling = [one_run(args, data, op, "wrk", r) for r in range(args.rounds)]
            print(f"{op:>9} wrk alone, GET /health: runs {', '.join(f'{c:.0f}' for c in ceiling)}/s, "
                  f"median {statistics.median(ceiling):.0f}/s", flush=True)
            continue
        runs = {"ecs-bench": [], "wrk": []}
        for r in range(args.rounds):
            order = ["ecs-bench", "wrk"] if r % 2 == 0 else ["wrk", "ecs-bench"]
            for tool in order:
                # Each run on a fresh cluster: a write leaves a 24-hour dedupe record, so on one
                # cluster the state, and the cost of a write, grows through the sitting.
                runs[tool].append(one_run(args, data, op, tool, r))
                print(f"{op:>9} round {r + 1} {tool:>9}: {runs[tool][-1]:9.0f} ok/s", flush=True)
        b, w = statistics.median(runs["ecs-bench"]), statistics.median(runs["wrk"])
        ratio = w / b
        worst = max(worst, abs(ratio - 1))
        print(f"{op:>9} medians: ecs-bench {b:.0f}/s, wrk {w:.0f}/s, wrk/ecs-bench {ratio:.3f}", flush=True)
    if worst > 0.10:
        print(f"crosscheck: FAILED: the two differ by {worst:.1%} (more than 10 %)")
        sys.exit(1)
    print(f"crosscheck: passed: within {worst:.1%}")


def one_run(args, data, op, tool, r):
    """One measured run of TOOL for OP on a cluster started for it, after ecs-bench's setup."""
    where = os.path.join(data, f"{op}-{tool}-{r}")
    try:
        for attempt in (1, 2, 3):
            try:
                nodes = smoke.start_cluster(os.path.join(where, f"cluster-{attempt}"))
                break
            except smoke.StartFailed:
                smoke.stop_all()
                if attempt == 3:
                    raise
        smoke.ENDPOINTS = [f"http://{n['api']}" for n in nodes]
        if op == "health":  # no ECS state: the ceiling of one HTTP request
            wrk_run(args, op, None, 5)
            return wrk_run(args, op, None, args.duration)
        # ecs-bench's setup (the cluster, a task definition, the service), with a short run.
        subprocess.run([os.path.join(args.bin, "ecs-bench"), "--endpoints", ",".join(smoke.ENDPOINTS), "run",
                        "--workload", "write", "--op", "scale", "--duration", "1", "--warmup", "0"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if tool == "ecs-bench":
            return bench_run(args, op, os.path.join(where, "run.json"))
        arn = call(smoke.ENDPOINTS[0], "DescribeClusters", {"clusters": ["bench"]})["clusters"][0]["clusterArn"]
        lines_file = os.path.join(where, "requests")
        with open(lines_file, "w") as f:
            for action, body in requests_of(op, arn):
                f.write(f"{action}\t{json.dumps(body)}\n")
        wrk_run(args, op, lines_file, 5)  # warm-up, as ecs-bench's
        return wrk_run(args, op, lines_file, args.duration)
    finally:
        smoke.stop_all()
        smoke.node_procs.clear()

if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Medians and spreads of a benchmarks/targets.sh run: python3 benchmarks/summarize.py OUT"""
import glob
import json
import os
import statistics
import sys

out = sys.argv[1]


def runs(name):
    found = []
    for path in sorted(glob.glob(os.path.join(out, f"{name}-[0-9]*.json"))):
        with open(path) as f:
            found.append(json.load(f))
    return found


def row(label, name, figure, peer=True, unit="/s", fmt="{:,.0f}"):
    data = runs(name)
    if not data:
        return
    ours = [figure(d["ecsd"]) for d in data]
    text = f"| {label} | {fmt.format(statistics.median(ours))}{unit} | " \
           f"{fmt.format(min(ours))}–{fmt.format(max(ours))} |"
    theirs = [figure(d["moto"]) for d in data if peer and "moto" in d]
    if theirs:
        m = statistics.median(theirs)
        text += f" {fmt.format(m)}{unit} | {statistics.median(ours) / m:.1f}× |"
    else:
        text += " | |"
    cpu = [d["ecsd"].get("cpu_cores", {}) for d in data]
    bench = [c.get("ecs-bench") for c in cpu if c.get("ecs-bench") is not None]
    nodes = [sum(v for k, v in c.items() if k.startswith("node")) for c in cpu if c]
    if bench:
        text += f" bench {statistics.median(bench):.2f}, nodes {statistics.median(nodes):.2f} cores |"
    leaders = [d.get("leader", {}).get("unchanged") for d in data]
    text += " " + ("leader unchanged" if all(leaders) else f"ELECTIONS in {leaders.count(False)} runs") + " |"
    print(text)


print("| figure | median | spread | moto | ratio | CPU | leader |")
print("|---|---|---|---|---|---|---|")
row("TagResource writes/s, 64 clients", "tag", lambda r: r["throughput_per_s"])
row("mixed writes/s, 64 clients", "write", lambda r: r["throughput_per_s"])
row("linearizable DescribeClusters/s, 64 clients", "read", lambda r: r["throughput_per_s"])
row("single-client write p50", "1client", lambda r: r["latency"]["p50_ms"], unit=" ms", fmt="{:.2f}")
row("tasks placed/s, 1,000 simulated instances", "placement", lambda r: r["throughput_per_s"] * 10, peer=False)
for name in ("write-60s", "failover"):
    path = os.path.join(out, f"{name}.json")
    if os.path.exists(path):
        with open(path) as f:
            d = json.load(f)
        if name == "write-60s":
            print(f"\n60 s of writes: {d['ecsd']['throughput_per_s']:,.0f}/s, leader {d.get('leader')}")
        else:
            w = sorted(d["ecsd"]["windows_ms"])
            p95 = w[min(len(w) - 1, int(round(0.95 * (len(w) - 1))))]
            print(f"\nfailover: {len(w)} kills; median {statistics.median(w):.0f} ms, p95 {p95:.0f} ms, "
                  f"min {w[0]:.0f}, max {w[-1]:.0f}; above 1 s: {sum(x > 1000 for x in w)}; "
                  f"errors after the kills: {d['ecsd'].get('errors_after_kills')}")

#!/usr/bin/env python3
"""Measures two figures of the replicated core against a running local cluster.

  latency  N ENDPOINT        single-client CreateCluster latency, N sequential writes
  failover PIDFILE ENDPOINTS time from kill -9 of the leader to the first acknowledged write

Only loopback endpoints; bounded request counts. The bench tool (ecs-bench) supersedes this.
"""
import http.client
import json
import os
import signal
import statistics
import sys
import time
import uuid


def call(conn, action, body):
    conn.request("POST", "/", json.dumps(body), {
        "X-Amz-Target": "AmazonEC2ContainerServiceV20141113." + action,
        "Content-Type": "application/x-amz-json-1.1",
    })
    r = conn.getresponse()
    return r.status, r.read()


def connect(endpoint, timeout=5):
    host, port = endpoint.replace("http://", "").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def latency(n, endpoint):
    conn = connect(endpoint)
    run = uuid.uuid4().hex[:8]
    samples = []
    for i in range(n):
        t = time.perf_counter()
        status, body = call(conn, "CreateCluster", {"clusterName": f"lat-{run}-{i}"})
        samples.append((time.perf_counter() - t) * 1000)
        assert status == 200, body
    samples.sort()
    q = lambda p: samples[min(len(samples) - 1, int(p * len(samples)))]
    print(json.dumps({"endpoint": endpoint, "writes": n, "median_ms": round(statistics.median(samples), 3),
                      "p90_ms": round(q(0.90), 3), "p99_ms": round(q(0.99), 3), "max_ms": round(samples[-1], 3)}))


def status(endpoint):
    host, port = endpoint.replace("http://", "").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=2)
    c.request("GET", "/cluster/status")
    return json.loads(c.getresponse().read())


def failover(pid_dir, endpoints):
    leader = status(endpoints[0])["leader"]
    pid = int(open(os.path.join(pid_dir, f"node-{leader}.pid")).read())
    survivors = [e for e in endpoints if not e.endswith(f"810{leader}")]
    conns = [connect(e, timeout=10) for e in survivors]
    os.kill(pid, signal.SIGKILL)
    killed = time.perf_counter()
    i = 0
    while time.perf_counter() - killed < 30:
        c = conns[i % len(conns)]
        i += 1
        try:
            s, _ = call(c, "CreateCluster", {"clusterName": f"fo-{uuid.uuid4().hex[:8]}"})
            if s == 200:
                print(json.dumps({"killed_leader": leader, "first_write_after_ms": round((time.perf_counter() - killed) * 1000, 1),
                                  "attempts": i}))
                return
        except Exception:
            conns[(i - 1) % len(conns)] = connect(survivors[(i - 1) % len(conns)], timeout=10)
    print("no write succeeded within 30 s")
    sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1] == "latency":
        latency(int(sys.argv[2]), sys.argv[3])
    else:
        failover(sys.argv[2], sys.argv[3:])

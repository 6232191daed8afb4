#!/usr/bin/env python3
"""The compose deployment's smoke test: deploy/up.sh brings up three nodes and two agents from
one command; a service of two tasks runs on the agents' Docker containers; the leader's
container is killed (docker kill); the others elect a leader, keep serving reads and writes, and
the service stays at two running tasks. Then deploy/down.sh removes everything.

Usage: deploy/smoke.py [--debug]   (scripts/test runs it with --debug where Docker and
docker-compose are; it needs the aws CLI)
"""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRETS = os.path.join(ROOT, "deploy", ".secrets")
CA = os.path.join(SECRETS, "tls", "ca.pem")
PORTS = {1: 18101, 2: 18102, 3: 18103}
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSD_"))}
ENV.update(AWS_SHARED_CREDENTIALS_FILE=os.path.join(SECRETS, "aws-credentials"), AWS_PROFILE="ecsd",
           AWS_DEFAULT_REGION="us-east-1", AWS_PAGER="", AWS_EC2_METADATA_DISABLED="true")


def run(args, check=True):
    done = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def ecs(node, *args):
    """One aws CLI call to node `node`: its JSON answer, or None when it failed."""
    done = run(["aws", "ecs", *args, "--endpoint-url", f"https://127.0.0.1:{PORTS[node]}",
                "--ca-bundle", CA, "--output", "json", "--cli-read-timeout", "10",
                "--cli-connect-timeout", "5"], check=False)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout or "{}")


def wait_for(what, check, within=120):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def status(node):
    """`ecsd cluster status` through node `node` (an operator key may read it)."""
    binary = os.path.join(os.environ["CARGO_TARGET_DIR"], "debug" if "--debug" in sys.argv else "release", "ecsd")
    done = run([binary, "cluster", "status", "--endpoint", f"https://127.0.0.1:{PORTS[node]}",
                "--ca-bundle", CA], check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def connected_agents(node):
    arns = (ecs(node, "list-container-instances", "--cluster", "default") or {}).get("containerInstanceArns")
    if not arns:
        return 0
    d = ecs(node, "describe-container-instances", "--cluster", "default", "--container-instances", *arns) or {}
    return len([i for i in d.get("containerInstances", []) if i.get("agentConnected")])


def running(node):
    d = ecs(node, "describe-services", "--cluster", "default", "--services", "web")
    return d["services"][0]["runningCount"] if d and d.get("services") else None


def main():
    profile = ["--debug"] if "--debug" in sys.argv else []
    run(["deploy/down.sh"])
    try:
        up = run(["deploy/up.sh", *profile])
        print(up.stdout.strip().splitlines()[-4] if up.stdout.strip() else "up")
        wait_for("two connected agents", lambda: connected_agents(1) == 2)
        print("compose: two agents connected")
        # The nodes log JSON (--log-format json), with their ids, and a normal start logs no
        # warning and no error.
        logs = run(["docker-compose", "-p", "ecsd", "-f", "deploy/compose.yaml", "logs", "--no-color",
                    "node-1", "node-2", "node-3"]).stdout
        for n in PORTS:
            assert f'"node_id":{n},' in logs, f"node-{n} logs no JSON with its node_id:\n{logs[-3000:]}"
        noisy = [line for line in logs.splitlines() if '"level":"WARN"' in line or '"level":"ERROR"' in line]
        assert not noisy, "the nodes' start logged:\n" + "\n".join(noisy[:10])
        print("compose: the nodes log JSON, and their start logged no WARN or ERROR")
        containers = json.dumps([{"name": "web", "image": "ecsd-busybox:latest", "memory": 32,
                                  "command": ["sleep", "3600"], "essential": True}])
        assert ecs(2, "register-task-definition", "--family", "web", "--container-definitions", containers)
        assert ecs(3, "create-service", "--cluster", "default", "--service-name", "web",
                   "--task-definition", "web", "--desired-count", "2")
        wait_for("the service at two running tasks", lambda: running(1) == 2)
        print("compose: the service runs two tasks in Docker containers")

        leader = wait_for("a leader", lambda: (status(1) or {}).get("leader"))
        survivor = next(n for n in PORTS if n != leader)
        container = run(["docker-compose", "-p", "ecsd", "-f", "deploy/compose.yaml", "ps", "-q",
                         f"node-{leader}"]).stdout.strip()
        run(["docker", "kill", container])
        print(f"compose: killed node-{leader}, the leader ({container[:12]})")
        new = wait_for("a new leader", lambda: (lambda s: s and s.get("leader") not in (None, leader)
                                                 and s["leader"])(status(survivor)))
        print(f"compose: node-{new} leads")
        assert wait_for("a write after the kill",
                        lambda: ecs(survivor, "create-cluster", "--cluster-name", "after-kill"))
        # The service is still served, at its count, for a while after the kill.
        for _ in range(10):
            count = wait_for("the service to be described", lambda: running(survivor))
            assert count == 2, f"the service runs {count} tasks"
            time.sleep(1)
        print("compose: after the leader's container was killed the service is still served at 2 tasks: passed")
    finally:
        run(["deploy/down.sh"], check=False)


if __name__ == "__main__":
    main()

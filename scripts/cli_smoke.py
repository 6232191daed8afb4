#!/usr/bin/env python3
"""Real-client smoke test: the aws CLI tours all 37 ECS actions against a 3-node
cluster started from the real binary, each call sent to a different node, and asserts on the
JSON it prints.

Usage: scripts/cli_smoke.py [path/to/ecsd]   (default: $CARGO_TARGET_DIR/debug/ecsd)
Only loopback; every node is stopped on exit.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "ecsd")
ENDPOINTS = ["http://127.0.0.1:8101", "http://127.0.0.1:8102", "http://127.0.0.1:8103"]
ENV = dict(os.environ, AWS_ACCESS_KEY_ID="smoke", AWS_SECRET_ACCESS_KEY="smoke", AWS_DEFAULT_REGION="us-east-1",
           AWS_PAGER="", AWS_EC2_METADATA_DISABLED="true")

AGENT = os.path.join(os.path.dirname(BINARY), "ecs-agent")
passed = 0
failed = 0
turn = 0
extra_procs = []


def aws(*args, expect_error=None):
    """Runs `aws ecs ARGS` against the next node; returns parsed JSON (or the error text)."""
    global turn
    endpoint = ENDPOINTS[turn % len(ENDPOINTS)]
    turn += 1
    cmd = ["aws", "ecs", *args, "--endpoint-url", endpoint, "--output", "json"]
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=60)
    if expect_error:
        if result.returncode == 0 or expect_error not in result.stderr:
            raise AssertionError(f"{' '.join(args)}: expected {expect_error}, got rc={result.returncode} "
                                 f"{result.stdout}{result.stderr}")
        return result.stderr
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {result.stderr}")
    return json.loads(result.stdout) if result.stdout.strip() else {}


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 - report every failure and go on
        failed += 1
        print(f"FAIL {name}: {e}")


def wait_ready():
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(ENDPOINTS[0] + "/cluster/status", timeout=2) as r:
                status = json.load(r)
            if status.get("leader") and all(m.get("applied_index") is not None for m in status["members"]):
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    raise SystemExit("cluster did not come up")


def tour():
    state = {}

    def clusters():
        c = aws("create-cluster", "--cluster-name", "smoke", "--tags", "key=team,value=cli")["cluster"]
        assert c["status"] == "ACTIVE" and c["clusterArn"].endswith(":cluster/smoke"), c
        d = aws("describe-clusters", "--clusters", "smoke", "missing", "--include", "TAGS")
        assert d["clusters"][0]["tags"] == [{"key": "team", "value": "cli"}], d
        assert d["failures"][0]["reason"] == "MISSING", d
        assert any(a.endswith("/smoke") for a in aws("list-clusters")["clusterArns"])
        aws("create-cluster")  # the default cluster
    check("clusters", clusters)

    def task_definitions():
        containers = json.dumps([{"name": "web", "image": "nginx", "memory": 128,
                                  "portMappings": [{"containerPort": 80}]}])
        td = aws("register-task-definition", "--family", "smoke", "--container-definitions", containers)
        assert td["taskDefinition"]["revision"] == 1 and td["taskDefinition"]["status"] == "ACTIVE", td
        aws("register-task-definition", "--family", "smoke", "--container-definitions", containers)
        d = aws("describe-task-definition", "--task-definition", "smoke")
        assert d["taskDefinition"]["revision"] == 2, d
        assert len(aws("list-task-definitions", "--family-prefix", "smoke")["taskDefinitionArns"]) == 2
        assert aws("list-task-definition-families")["families"] == ["smoke"]
        gone = aws("deregister-task-definition", "--task-definition", "smoke:1")
        assert gone["taskDefinition"]["status"] == "INACTIVE", gone
        aws("deregister-task-definition", "--task-definition", "smoke", expect_error="Revision is missing")
        aws("describe-task-definition", "--task-definition", "nope", expect_error="ClientException")
    check("task definitions", task_definitions)

    def account_settings():
        s = aws("put-account-setting", "--name", "containerInstanceLongArnFormat", "--value", "enabled")["setting"]
        assert s["value"] == "ENABLED", s
        eff = aws("list-account-settings", "--effective-settings")["settings"]
        assert {x["name"]: x["value"] for x in eff}["containerInstanceLongArnFormat"] == "ENABLED", eff
        d = aws("delete-account-setting", "--name", "taskLongArnFormat")["setting"]
        assert d["value"] == "DISABLED", d
        aws("put-account-setting", "--name", "bogus", "--value", "ENABLED", expect_error="InvalidParameterException")
    check("account settings", account_settings)

    def container_instances():
        ci = aws("register-container-instance", "--cluster", "smoke",
                 "--total-resources", "name=CPU,type=INTEGER,integerValue=2048",
                 "name=MEMORY,type=INTEGER,integerValue=4096",
                 "--version-info", "agentVersion=0.0.1",
                 "--attributes", "name=ecs.os-type,value=linux")["containerInstance"]
        arn = ci["containerInstanceArn"]
        assert "/smoke/" in arn and ci["status"] == "ACTIVE", ci
        state["instance"] = arn
        d = aws("describe-container-instances", "--cluster", "smoke", "--container-instances", arn)
        assert d["containerInstances"][0]["remainingResources"][1]["integerValue"] == 4096, d
        assert aws("list-container-instances", "--cluster", "smoke")["containerInstanceArns"] == [arn]
        assert aws("list-container-instances", "--cluster", "smoke", "--filter",
                   "attribute:ecs.os-type == linux")["containerInstanceArns"] == [arn]
        u = aws("update-container-instances-state", "--cluster", "smoke", "--container-instances", arn,
                "--status", "DRAINING")
        assert u["containerInstances"][0]["status"] == "DRAINING", u
        assert aws("list-container-instances", "--cluster", "smoke", "--status", "DRAINING")["containerInstanceArns"]
        a = aws("update-container-agent", "--cluster", "smoke", "--container-instance", arn)
        assert a["containerInstance"]["agentUpdateStatus"] == "PENDING", a
        aws("update-container-agent", "--cluster", "smoke", "--container-instance", arn,
            expect_error="UpdateInProgressException")
        assert aws("discover-poll-endpoint", "--cluster", "smoke")["endpoint"].startswith("http://127.0.0.1:")
    check("container instances", container_instances)

    def attributes():
        arn = state["instance"]
        aws("put-attributes", "--cluster", "smoke", "--attributes", f"name=stack,value=prod,targetId={arn}")
        listed = aws("list-attributes", "--cluster", "smoke", "--target-type", "container-instance",
                     "--attribute-name", "stack")["attributes"]
        assert listed == [{"name": "stack", "value": "prod", "targetType": "container-instance", "targetId": arn}], listed
        aws("delete-attributes", "--cluster", "smoke", "--attributes", f"name=stack,targetId={arn}")
        assert aws("list-attributes", "--cluster", "smoke", "--target-type", "container-instance",
                   "--attribute-name", "stack")["attributes"] == []
    check("attributes", attributes)

    def tags():
        for arn in [state["instance"], "arn:aws:ecs:us-east-1:000000000000:cluster/smoke",
                    "arn:aws:ecs:us-east-1:000000000000:task-definition/smoke:2"]:
            aws("tag-resource", "--resource-arn", arn, "--tags", "key=env,value=ci")
            assert {"key": "env", "value": "ci"} in aws("list-tags-for-resource", "--resource-arn", arn)["tags"]
            aws("untag-resource", "--resource-arn", arn, "--tag-keys", "env")
            assert {"key": "env", "value": "ci"} not in aws("list-tags-for-resource", "--resource-arn", arn)["tags"]
    check("tags", tags)

    def tasks():
        arn = state["instance"]
        aws("update-container-instances-state", "--cluster", "smoke", "--container-instances", arn,
            "--status", "ACTIVE")
        r = aws("run-task", "--cluster", "smoke", "--task-definition", "smoke", "--count", "2",
                "--started-by", "smoke")
        assert len(r["tasks"]) == 2 and r["tasks"][0]["lastStatus"] == "PENDING", r
        task = r["tasks"][0]["taskArn"]
        state["task"] = task
        s = aws("start-task", "--cluster", "smoke", "--task-definition", "smoke:2", "--container-instances", arn)
        assert s["tasks"][0]["containerInstanceArn"] == arn, s
        aws("run-task", "--cluster", "smoke", "--task-definition", "smoke", "--count", "11",
            expect_error="InvalidParameterException")
        ack = aws("submit-task-state-change", "--cluster", "smoke", "--task", task, "--status", "RUNNING")
        assert ack["acknowledgment"] == "ACK", ack
        aws("submit-container-state-change", "--cluster", "smoke", "--task", task, "--container-name", "web",
            "--status", "RUNNING")
        d = aws("describe-tasks", "--cluster", "smoke", "--tasks", task, "missing")
        assert d["tasks"][0]["lastStatus"] == "RUNNING" and d["tasks"][0]["containers"][0]["lastStatus"] == "RUNNING", d
        assert d["failures"][0]["reason"] == "MISSING", d
        assert len(aws("list-tasks", "--cluster", "smoke", "--started-by", "smoke")["taskArns"]) == 2
        stopped = aws("stop-task", "--cluster", "smoke", "--task", task, "--reason", "smoke test")["task"]
        assert stopped["desiredStatus"] == "STOPPED" and stopped["lastStatus"] == "RUNNING", stopped
        assert aws("list-tasks", "--cluster", "smoke", "--desired-status", "STOPPED")["taskArns"] == [task]
    check("tasks", tasks)

    def services():
        c = aws("create-service", "--cluster", "smoke", "--service-name", "web", "--task-definition", "smoke",
                "--desired-count", "1", "--client-token", "smoke-1")["service"]
        assert c["status"] == "ACTIVE" and c["deployments"][0]["status"] == "PRIMARY", c
        again = aws("create-service", "--cluster", "smoke", "--service-name", "web", "--task-definition", "smoke",
                    "--desired-count", "1", "--client-token", "smoke-1")["service"]
        assert again["serviceArn"] == c["serviceArn"], again
        u = aws("update-service", "--cluster", "smoke", "--service", "web", "--desired-count", "0")["service"]
        assert u["desiredCount"] == 0 and u["deployments"][0]["id"] == c["deployments"][0]["id"], u
        d = aws("describe-services", "--cluster", "smoke", "--services", "web", "ghost")
        assert d["services"][0]["serviceName"] == "web" and d["failures"][0]["reason"] == "MISSING", d
        assert aws("list-services", "--cluster", "smoke")["serviceArns"] == [c["serviceArn"]]
        gone = aws("delete-service", "--cluster", "smoke", "--service", "web")["service"]
        assert gone["status"] == "DRAINING", gone
        assert aws("list-services", "--cluster", "smoke")["serviceArns"] == []
        aws("update-service", "--cluster", "smoke", "--service", "ghost", "--desired-count", "1",
            expect_error="ServiceNotFoundException")
    check("services", services)

    def deployments():
        # Three simulated instances; a service rolls out a new revision; the aws CLI's own
        # waiter (services-stable) returns each time.
        aws("create-cluster", "--cluster-name", "rollout")
        log = open(os.path.join(tempfile.gettempdir(), "ecsd-smoke-agent.log"), "w")
        extra_procs.append(subprocess.Popen(
            [AGENT, "--runtime", "sim", "--instances", "3", "--cluster", "rollout", "--cpu", "1024",
             "--memory", "1024", "--sim-start-ms", "100", "--endpoint", ",".join(ENDPOINTS)],
            stdout=log, stderr=log))
        deadline = time.time() + 60
        while len(aws("list-container-instances", "--cluster", "rollout")["containerInstanceArns"]) < 3:
            assert time.time() < deadline, "the simulated instances did not register"
            time.sleep(0.3)
        for memory in ("128", "64"):
            aws("register-task-definition", "--family", "roll", "--container-definitions",
                json.dumps([{"name": "web", "image": "busybox", "memory": int(memory)}]))
        aws("create-service", "--cluster", "rollout", "--service-name", "web", "--task-definition", "roll:1",
            "--desired-count", "6")
        aws("wait", "services-stable", "--cluster", "rollout", "--services", "web")
        s = aws("describe-services", "--cluster", "rollout", "--services", "web")["services"][0]
        assert s["runningCount"] == 6 and len(s["deployments"]) == 1, s
        aws("update-service", "--cluster", "rollout", "--service", "web", "--task-definition", "roll:2")
        aws("wait", "services-stable", "--cluster", "rollout", "--services", "web")
        s = aws("describe-services", "--cluster", "rollout", "--services", "web")["services"][0]
        d = s["deployments"]
        assert len(d) == 1 and d[0]["taskDefinition"].endswith("roll:2") and d[0]["runningCount"] == 6, s
        messages = [e["message"] for e in s["events"]]
        assert any(m.startswith("(service web) has started 6 tasks: (task ") for m in messages), messages
        assert any(m.startswith("(service web) has stopped ") for m in messages), messages
        assert "(service web) has reached a steady state." in messages, messages
        tasks = aws("list-tasks", "--cluster", "rollout", "--service-name", "web")["taskArns"]
        assert len(tasks) == 6, tasks
        aws("delete-service", "--cluster", "rollout", "--service", "web", "--force")
    check("deployments", deployments)

    def teardown():
        aws("delete-cluster", "--cluster", "smoke", expect_error="ClusterContainsContainerInstancesException")
        aws("deregister-container-instance", "--cluster", "smoke", "--container-instance", state["instance"],
            expect_error="InvalidParameterException")
        d = aws("deregister-container-instance", "--cluster", "smoke", "--container-instance", state["instance"],
                "--force")
        assert d["containerInstance"]["status"] == "INACTIVE", d
        t = aws("describe-tasks", "--cluster", "smoke", "--tasks", state["task"])["tasks"][0]
        assert t["lastStatus"] == "STOPPED", t
        assert aws("delete-cluster", "--cluster", "smoke")["cluster"]["status"] == "INACTIVE"
        aws("delete-cluster", "--cluster", "smoke", expect_error="ClusterNotFoundException")
    check("teardown", teardown)


def main():
    if not shutil.which("aws"):
        raise SystemExit("the aws CLI is not installed (pip install awscli)")
    data = tempfile.mkdtemp(prefix="ecsd-smoke-")
    procs = []
    try:
        for i in (1, 2, 3):
            log = open(os.path.join(data, f"node-{i}.log"), "w")
            procs.append(subprocess.Popen(
                [BINARY, "serve", "--config", os.path.join(ROOT, f"cluster-config/local/node-{i}.toml"),
                 "--data-dir", os.path.join(data, f"node-{i}")],
                stdout=log, stderr=log, env=dict(os.environ, RUST_LOG="ecsd=info,openraft=error")))
        wait_ready()
        tour()
    finally:
        for p in extra_procs + procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(data, ignore_errors=True)
    print(f"smoke: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Real-client smoke test: the aws CLI tours the ECS actions against a 3-node
cluster started from the real binary, each call sent to a different node, and asserts on the
JSON it prints. Then `ecsd dev --secure` (on dev's own ports, 127.0.0.1:8101-8103): the command
it prints works, and an unsigned, wrongly signed, skewed or unauthorised call gets AWS's error.

Usage: scripts/cli_smoke.py [path/to/ecsd]   (default: $CARGO_TARGET_DIR/debug/ecsd)
Only loopback, on ports the OS picks. Before the tour and after it, every port must be answered
by the node this script started for it (its own id and addresses, its own process), and every
process it started is stopped on every way out (a failure, an exception, SIGINT or SIGTERM, and
on Linux even SIGKILL of this script, through the children's parent-death signal).
"""
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "ecsd")
# Filled in by start_cluster with the ports the OS gave.
ENDPOINTS = []
ENV = dict(os.environ, AWS_ACCESS_KEY_ID="smoke", AWS_SECRET_ACCESS_KEY="smoke", AWS_DEFAULT_REGION="us-east-1",
           AWS_PAGER="", AWS_EC2_METADATA_DISABLED="true")

AGENT = os.path.join(os.path.dirname(BINARY), "ecs-agent")
passed = 0
failed = 0
turn = 0
# Every process this script started, nodes and agent alike: stopped by stop_all on every exit.
node_procs = []
extra_procs = []


def die_with_parent():
    """In the child, before exec: on Linux, be killed when this script dies, however it dies."""
    try:
        import ctypes
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:  # noqa: BLE001 - not Linux: the other exit paths still stop the children
        pass


def spawn(args, log, env=None):
    return subprocess.Popen(args, stdout=log, stderr=log, env=env, preexec_fn=die_with_parent)


def stop_all():
    """Stops every process this script started: SIGTERM, then SIGKILL after 20 s. Idempotent."""
    procs = extra_procs + node_procs
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    extra_procs.clear()
    node_procs.clear()


def on_signal(signum, _frame):
    # Unwinds through main's finally (and atexit) like any other exit.
    raise SystemExit(f"smoke: stopped by signal {signum}")


def free_ports(n):
    """n distinct ports the OS picks on loopback (held open together so they differ, then closed)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


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


def get_json(url, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)


def listening_inodes(port):
    """Socket inodes listening on 127.0.0.1:port (or any address), from /proc/net/tcp*."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def socket_inodes(pid):
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def check_own_cluster(nodes):
    """Fails unless every process is alive and each port is answered by the node started for it."""
    expected_members = {n["id"]: (n["api"], n["raft"]) for n in nodes}
    for n, proc in zip(nodes, node_procs):
        if proc.poll() is not None:
            raise AssertionError(f"node {n['id']} (pid {proc.pid}) exited with {proc.returncode}")
        url = f"http://{n['api']}"
        # The cluster it belongs to is ours: the members and addresses this script chose.
        status = get_json(url + "/cluster/status")
        members = {m["id"]: (m["api_addr"], m["raft_addr"]) for m in status["members"]}
        if members != expected_members:
            raise AssertionError(f"{url} reports members {members}, not ours {expected_members}")
        # The node answering is the one configured for this port: it advertises its own addresses.
        poll = get_json(url + "/", {}, {"x-amz-target": "AmazonEC2ContainerServiceV20141113.DiscoverPollEndpoint",
                                        "content-type": "application/x-amz-json-1.1"})
        mine = {"endpoint": f"http://{n['raft']}", "telemetryEndpoint": f"http://{n['api']}"}
        if poll != mine:
            raise AssertionError(f"{url} answers DiscoverPollEndpoint with {poll}, node {n['id']} would say {mine}")
        # And the socket listening on the port is our child's (Linux: another process, even an
        # ecsd with the same configuration, would answer the same).
        if os.path.exists("/proc/net/tcp"):
            port = int(n["api"].rsplit(":", 1)[1])
            if not listening_inodes(port) & socket_inodes(proc.pid):
                raise AssertionError(f"port {port} is not listened on by node {n['id']}'s process {proc.pid}")
    for p in extra_procs:
        if p.poll() is not None:
            raise AssertionError(f"{p.args[0]} (pid {p.pid}) exited with {p.returncode}")


class StartFailed(Exception):
    pass


def start_cluster(data):
    """Starts three nodes on ports the OS picked; returns their configs once a leader is known."""
    os.makedirs(data)
    ports = free_ports(6)
    nodes = [{"id": i, "api": f"127.0.0.1:{ports[2 * i - 2]}", "raft": f"127.0.0.1:{ports[2 * i - 1]}"}
             for i in (1, 2, 3)]
    members = "".join(f'\n[[initial_members]]\nid = {m["id"]}\napi_addr = "{m["api"]}"\nraft_addr = "{m["raft"]}"\n'
                      for m in nodes)
    # The config alone decides: no ECSD_* override from the caller's environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECSD_")}
    env["RUST_LOG"] = "ecsd=info,openraft=error"
    for n in nodes:
        config = os.path.join(data, f"node-{n['id']}.toml")
        with open(config, "w") as f:
            f.write(f'node_id = {n["id"]}\ndata_dir = "{os.path.join(data, "node-%d" % n["id"])}"\n'
                    f'api_addr = "{n["api"]}"\nraft_addr = "{n["raft"]}"\nbootstrap = true\n{members}')
        log = open(os.path.join(data, f"node-{n['id']}.log"), "w")
        node_procs.append(spawn([BINARY, "serve", "--config", config], log, env))
    deadline = time.time() + 60
    while time.time() < deadline:
        for n, p in zip(nodes, node_procs):
            if p.poll() is not None:
                with open(os.path.join(data, f"node-{n['id']}.log")) as f:
                    tail = f.read()[-2000:]
                raise StartFailed(f"node {n['id']} exited with {p.returncode} while starting:\n{tail}")
        try:
            status = get_json(f"http://{nodes[0]['api']}/cluster/status")
            if status.get("leader") and all(m.get("applied_index") is not None for m in status["members"]):
                check_own_cluster(nodes)
                return nodes
        except Exception:  # noqa: BLE001 - not up yet (or not ours yet: checked again below)
            pass
        time.sleep(0.2)
    check_own_cluster(nodes)  # says why, if it is not ours
    raise StartFailed("the cluster did not elect a leader within 60 s")


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
        # Today's defaults: long ARNs on; values are echoed as sent.
        eff = aws("list-account-settings", "--effective-settings")["settings"]
        assert {x["name"]: x["value"] for x in eff}["taskLongArnFormat"] == "enabled", eff
        s = aws("put-account-setting", "--name", "containerInstanceLongArnFormat", "--value", "disabled")["setting"]
        assert s["value"] == "disabled", s
        eff = aws("list-account-settings", "--effective-settings")["settings"]
        assert {x["name"]: x["value"] for x in eff}["containerInstanceLongArnFormat"] == "disabled", eff
        d = aws("delete-account-setting", "--name", "containerInstanceLongArnFormat")["setting"]
        assert d["value"] == "enabled", d
        s = aws("put-account-setting-default", "--name", "containerInsights", "--value", "enhanced")["setting"]
        assert s["value"] == "enhanced" and s["principalArn"].endswith(":root"), s
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
        extra_procs.append(spawn(
            [AGENT, "--runtime", "sim", "--instances", "3", "--cluster", "rollout", "--cpu", "1024",
             "--memory", "1024", "--sim-start-ms", "100", "--endpoint", ",".join(ENDPOINTS)], log))
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

    def fargate():
        # An agent that offers Fargate capacity; a Fargate task definition and task.
        aws("create-cluster", "--cluster-name", "modern")
        log = open(os.path.join(tempfile.gettempdir(), "ecsd-smoke-fargate-agent.log"), "w")
        extra_procs.append(spawn(
            [AGENT, "--runtime", "sim", "--capacity", "fargate", "--cluster", "modern", "--cpu", "4096",
             "--memory", "8192", "--sim-start-ms", "100", "--endpoint", ",".join(ENDPOINTS)], log))
        deadline = time.time() + 60
        while len(aws("list-container-instances", "--cluster", "modern")["containerInstanceArns"]) < 1:
            assert time.time() < deadline, "the Fargate agent did not register"
            time.sleep(0.3)
        aws("register-task-definition", "--family", "fg", "--requires-compatibilities", "FARGATE",
            "--network-mode", "awsvpc", "--cpu", "256", "--memory", "512", "--container-definitions",
            json.dumps([{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}]))
        run = aws("run-task", "--cluster", "modern", "--task-definition", "fg", "--launch-type", "FARGATE",
                  "--network-configuration", "awsvpcConfiguration={subnets=[subnet-1],securityGroups=[sg-1]}")
        (task,) = run["tasks"]
        assert task["launchType"] == "FARGATE" and task["capacityProviderName"] == "FARGATE", task
        assert task["attachments"][0]["type"] == "ElasticNetworkInterface", task
        deadline = time.time() + 60
        while True:
            t = aws("describe-tasks", "--cluster", "modern", "--tasks", task["taskArn"])["tasks"][0]
            if t["lastStatus"] == "RUNNING":
                break
            assert time.time() < deadline, t
            time.sleep(0.3)
        assert t["attachments"][0]["status"] == "ATTACHED", t
        assert t["containers"][0]["networkInterfaces"][0]["privateIpv4Address"], t
        aws("stop-task", "--cluster", "modern", "--task", task["taskArn"])
    check("a Fargate task on Fargate capacity", fargate)

    def circuit_breaker():
        # Two instances whose containers are local processes; a revision that exits at once.
        aws("create-cluster", "--cluster-name", "breaker")
        for i in (1, 2):
            log = open(os.path.join(tempfile.gettempdir(), f"ecsd-smoke-breaker-agent-{i}.log"), "w")
            extra_procs.append(spawn(
                [AGENT, "--runtime", "process", "--cluster", "breaker", "--cpu", "1024", "--memory", "1024",
                 "--instance-id", f"i-breaker{i}", "--log-dir", os.path.join(tempfile.gettempdir(), "ecsd-smoke-logs"),
                 "--endpoint", ",".join(ENDPOINTS)], log))
        deadline = time.time() + 60
        while len(aws("list-container-instances", "--cluster", "breaker")["containerInstanceArns"]) < 2:
            assert time.time() < deadline, "the process agents did not register"
            time.sleep(0.3)
        for command in (["sleep", "3600"], ["sh", "-c", "exit 1"]):
            aws("register-task-definition", "--family", "cb", "--container-definitions",
                json.dumps([{"name": "c", "image": "busybox", "memory": 16, "command": command}]))
        aws("create-service", "--cluster", "breaker", "--service-name", "web", "--task-definition", "cb:1",
            "--desired-count", "2", "--deployment-configuration",
            "maximumPercent=200,minimumHealthyPercent=50,deploymentCircuitBreaker={enable=true,rollback=true}")
        aws("wait", "services-stable", "--cluster", "breaker", "--services", "web")
        deadline = time.time() + 60
        while True:  # COMPLETED once its tasks have settled (15 s)
            first = aws("describe-services", "--cluster", "breaker", "--services", "web")["services"][0]["deployments"][0]
            if first["rolloutState"] == "COMPLETED":
                break
            assert time.time() < deadline, first
            time.sleep(1)
        aws("update-service", "--cluster", "breaker", "--service", "web", "--task-definition", "cb:2")
        deadline = time.time() + 120
        while True:
            s = aws("describe-services", "--cluster", "breaker", "--services", "web")["services"][0]
            d = s["deployments"]
            if len(d) == 1 and d[0]["taskDefinition"].endswith("/cb:1") and d[0]["rolloutState"] == "COMPLETED":
                break
            assert time.time() < deadline, f"no rollback: {s['deployments']} {s['events'][:5]}"
            time.sleep(0.5)
        aws("wait", "services-stable", "--cluster", "breaker", "--services", "web")
        messages = [e["message"] for e in s["events"]]
        assert any("deployment failed: tasks failed to start." in m for m in messages), messages
        assert f"(service web) rolling back to deployment {first['id']}." in messages, messages
        aws("delete-service", "--cluster", "breaker", "--service", "web", "--force")
    check("the circuit breaker rolls a failing revision back", circuit_breaker)

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


def secure_dev(data):
    """`ecsd dev --secure`, as a new user runs it: the command it prints works; the same call
    unsigned, with a wrong secret or a clock 20 minutes off gets AWS's error; a read-only key
    cannot write; an operator key cannot remove a node. Its ports are dev's: 127.0.0.1:8101-8103."""
    busy = [p for p in (8101, 8102, 8103, 8201, 8202, 8203) if listening_inodes(p)]
    if busy:
        raise AssertionError(f"ports {busy} are taken (is `ecsd dev` running?)")
    os.makedirs(data)
    log_path = os.path.join(data, "dev.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([BINARY, "dev", "--secure", "--no-agents", "--data-dir", "data"], cwd=data,
                                stdout=log, stderr=log, preexec_fn=die_with_parent)
    extra_procs.append(proc)
    printed = []
    deadline = time.time() + 90
    while time.time() < deadline and not printed:
        if proc.poll() is not None:
            raise AssertionError(f"ecsd dev --secure exited: {open(log_path).read()[-2000:]}")
        printed = [line.strip() for line in open(log_path) if "aws ecs list-clusters" in line]
        time.sleep(0.5)
    if not printed:
        raise AssertionError("ecsd dev --secure printed no command")
    # A normal start logs no warning and no error.
    noisy = [line.strip() for line in open(log_path) if "WARN" in line or "ERROR" in line]
    if noisy:
        raise AssertionError("ecsd dev --secure logged at its start:\n" + "\n".join(noisy[:10]))
    env = dict(os.environ, AWS_PAGER="", AWS_EC2_METADATA_DISABLED="true")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"):
        env.pop(k, None)

    def shell(command, extra_env=None):
        return subprocess.run(command, shell=True, cwd=data, env=dict(env, **(extra_env or {})),
                              capture_output=True, text=True, timeout=60)

    result = shell(printed[0])
    if result.returncode != 0 or "clusterArns" not in result.stdout:
        raise AssertionError(f"the printed command failed: {printed[0]}: {result.stdout}{result.stderr}")
    # The same call without a signature, with a wrong secret, with a clock 20 minutes behind.
    args = printed[0].split(" aws ", 1)[1]
    unsigned = shell(f"aws {args} --no-sign-request")
    if "MissingAuthenticationTokenException" not in unsigned.stderr:
        raise AssertionError(f"unsigned: {unsigned.stdout}{unsigned.stderr}")
    with open(os.path.join(data, "data", "aws-credentials")) as f:
        key_id = [line.split("=")[1].strip() for line in f if line.startswith("aws_access_key_id")][0]
    wrong = shell(f"aws {args}", {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": "w" * 40})
    if "InvalidSignatureException" not in wrong.stderr:
        raise AssertionError(f"wrong secret: {wrong.stdout}{wrong.stderr}")
    operator = {"AWS_SHARED_CREDENTIALS_FILE": "data/aws-credentials", "AWS_PROFILE": "ecsd"}
    if shutil.which("faketime"):
        skewed = shell(f"faketime -f -20m aws {args}", operator)
        if "InvalidSignatureException" not in skewed.stderr or "Signature expired" not in skewed.stderr:
            raise AssertionError(f"skewed clock: {skewed.stdout}{skewed.stderr}")
    else:
        print("SKIPPED the skewed-clock call: faketime is missing (apt-get install faketime)", file=sys.stderr)
    # A read-only key (made with the root key) reads but cannot write.
    root = {"AWS_SHARED_CREDENTIALS_FILE": "data/root-credentials", "AWS_PROFILE": "root"}
    made = shell(f"{BINARY} keys create --endpoint https://127.0.0.1:8101 --ca-bundle data/tls/ca.pem "
                 f"--name viewer --role read-only", root)
    if made.returncode != 0:
        raise AssertionError(f"keys create: {made.stdout}{made.stderr}")
    viewer = json.loads(made.stdout)
    as_viewer = {"AWS_ACCESS_KEY_ID": viewer["accessKeyId"], "AWS_SECRET_ACCESS_KEY": viewer["secretAccessKey"]}
    read = shell(f"aws {args}", as_viewer)
    if read.returncode != 0:
        raise AssertionError(f"read-only read: {read.stderr}")
    write = shell(f"aws {args.replace('list-clusters', 'create-cluster --cluster-name nope')}", as_viewer)
    if "AccessDeniedException" not in write.stderr:
        raise AssertionError(f"read-only write: {write.stdout}{write.stderr}")
    # An operator key cannot remove a node; the membership stays as it was.
    removed = shell(f"{BINARY} cluster remove-node --endpoint https://127.0.0.1:8101 "
                    f"--ca-bundle data/tls/ca.pem --id 3", operator)
    if removed.returncode == 0 or "AccessDeniedException" not in removed.stdout:
        raise AssertionError(f"an operator removed a node: {removed.stdout}{removed.stderr}")
    status = shell(f"{BINARY} cluster status --endpoint https://127.0.0.1:8102 --ca-bundle data/tls/ca.pem", root)
    if status.returncode != 0 or len(json.loads(status.stdout)["members"]) != 3:
        raise AssertionError(f"status: {status.stdout}{status.stderr}")
    backup_round_trip(data, shell, root, operator)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)


def backup_round_trip(data, shell, root, operator):
    """`ecsd snapshot save` (an admin key only), `inspect`, then `restore` into the data directory
    of a new one-member cluster, which serves the old data once started."""
    kept = shell("aws ecs create-cluster --cluster-name kept --endpoint-url https://127.0.0.1:8101 "
                 "--ca-bundle data/tls/ca.pem --region us-east-1", operator)
    if kept.returncode != 0:
        raise AssertionError(f"create-cluster: {kept.stdout}{kept.stderr}")
    save = f"{BINARY} snapshot save data/backup.snap --endpoint https://127.0.0.1:8102 --ca-bundle data/tls/ca.pem"
    denied = shell(save, operator)
    if denied.returncode == 0 or "AccessDeniedException" not in denied.stderr:
        raise AssertionError(f"an operator saved a backup: {denied.stdout}{denied.stderr}")
    saved = shell(save, root)
    if saved.returncode != 0 or "saved data/backup.snap" not in saved.stdout:
        raise AssertionError(f"snapshot save: {saved.stdout}{saved.stderr}")
    if os.stat(os.path.join(data, "data", "backup.snap")).st_mode & 0o077:
        raise AssertionError("the backup (it holds every access key) is readable by others")
    inspected = shell(f"{BINARY} snapshot inspect data/backup.snap --json")
    summary = json.loads(inspected.stdout) if inspected.returncode == 0 else {}
    if len(summary.get("voters", [])) != 3 or not summary.get("index") or summary["counts"].get("access_keys", 0) < 2:
        raise AssertionError(f"snapshot inspect: {inspected.stdout}{inspected.stderr}")
    api, raft = free_ports(2)
    config = os.path.join(data, "restored.toml")
    with open(config, "w") as f:
        f.write(f'node_id = 1\ndata_dir = "{os.path.join(data, "restored")}"\n'
                f'api_addr = "127.0.0.1:{api}"\nraft_addr = "127.0.0.1:{raft}"\nbootstrap = true\n'
                f'[[initial_members]]\nid = 1\napi_addr = "127.0.0.1:{api}"\nraft_addr = "127.0.0.1:{raft}"\n')
    restored = shell(f"{BINARY} snapshot restore data/backup.snap --config {config}")
    if restored.returncode != 0 or "restored node 1" not in restored.stdout:
        raise AssertionError(f"snapshot restore: {restored.stdout}{restored.stderr}")
    again = shell(f"{BINARY} snapshot restore data/backup.snap --config {config}")
    if again.returncode == 0 or "already holds a node's data" not in again.stderr:
        raise AssertionError(f"a second restore into the same directory: {again.stdout}{again.stderr}")
    with open(os.path.join(data, "restored.log"), "w") as log:
        node = subprocess.Popen([BINARY, "serve", "--config", config], stdout=log, stderr=log,
                                preexec_fn=die_with_parent)
    extra_procs.append(node)
    listed = None
    deadline = time.time() + 60
    while time.time() < deadline:
        listed = shell(f"aws ecs list-clusters --endpoint-url http://127.0.0.1:{api} --region us-east-1",
                       {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"})
        if listed.returncode == 0 and "cluster/kept" in listed.stdout:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the restored node does not serve the old data: {listed.stdout}{listed.stderr}")
    node.send_signal(signal.SIGTERM)
    node.wait(timeout=30)
    print("smoke: snapshot save, inspect and restore round trip: ok")


def main():
    global ENDPOINTS
    if not shutil.which("aws"):
        raise SystemExit("the aws CLI is not installed (pip install awscli)")
    atexit.register(stop_all)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    data = tempfile.mkdtemp(prefix="ecsd-smoke-")
    try:
        # A port the OS gave may be taken by someone else before the node binds it: then the
        # node exits, and the cluster starts again on other ports.
        for attempt in (1, 2, 3):
            try:
                nodes = start_cluster(os.path.join(data, f"try-{attempt}"))
                break
            except StartFailed as e:
                stop_all()
                if attempt == 3:
                    raise SystemExit(f"smoke: the cluster did not start: {e}")
                print(f"smoke: start attempt {attempt} failed, retrying on other ports: {e}")
        ENDPOINTS = [f"http://{n['api']}" for n in nodes]
        print(f"smoke: nodes on {', '.join(ENDPOINTS)}")
        check("the nodes answering are ours", lambda: check_own_cluster(nodes))
        tour()
        check("the nodes answering are still ours", lambda: check_own_cluster(nodes))
        stop_all()
        check("ecsd dev --secure: its printed command works, and AWS's errors", lambda: secure_dev(os.path.join(data, "secure")))
    finally:
        stop_all()
        shutil.rmtree(data, ignore_errors=True)
    print(f"smoke: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

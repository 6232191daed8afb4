#!/usr/bin/env python3
"""Terraform against a real cluster: tests/terraform/main.tf (a cluster with settings and Fargate
capacity providers, an EC2 and a Fargate task definition, three services with placement, the
circuit breaker, tag propagation and a network configuration) is applied, planned (no changes
may remain) and destroyed against three `ecsd serve` processes, with four `ecs-agent`s (three
EC2 instances and one that offers Fargate capacity, process runtime: the tasks really run, an
awsvpc task in its own network namespace when run as root).

Usage: scripts/terraform_smoke.py [path/to/ecsd]   (default: $CARGO_TARGET_DIR/debug/ecsd)
Skips, with a line on stderr, where terraform or the AWS provider is missing, unless
ECSD_REQUIRE_TERRAFORM=1. The provider comes from a local filesystem mirror when one is found
(a `registry.terraform.io` directory holding hashicorp/aws), else from the registry.
"""
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_smoke as smoke  # noqa: E402 - the cluster, the processes and the aws CLI helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "tests", "terraform")
CLUSTER = "tf-smoke"


def skip(reason):
    if os.environ.get("ECSD_REQUIRE_TERRAFORM") == "1":
        raise SystemExit(f"terraform smoke: ECSD_REQUIRE_TERRAFORM=1 but {reason}")
    print(f"SKIPPED terraform smoke: {reason}", file=sys.stderr)
    sys.exit(0)


def provider_mirror():
    """A directory holding registry.terraform.io/hashicorp/aws, searched four levels deep."""
    for base in ("/opt", "/usr/local/share", "/usr/share", os.path.expanduser("~/.terraform.d"), "/root"):
        for dirpath, dirnames, _ in os.walk(base):
            depth = dirpath[len(base):].count(os.sep)
            if os.path.basename(dirpath) == "registry.terraform.io" and \
                    os.path.isdir(os.path.join(dirpath, "hashicorp", "aws")):
                return os.path.dirname(dirpath)
            if depth >= 3:
                dirnames[:] = []
    return None


def terraform(work, *args, env, expect_rc=(0,), timeout=900):
    cmd = ["terraform", f"-chdir={work}", *args]
    started = time.time()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    print(f"terraform {' '.join(args[:1])}: rc {result.returncode} in {time.time() - started:.1f} s")
    if result.returncode not in expect_rc:
        raise AssertionError(f"terraform {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
    return result


def start_agents(data):
    """Three EC2 agents (one per zone) and one that offers Fargate capacity, process runtime."""
    agent = os.path.join(os.path.dirname(smoke.BINARY), "ecs-agent")
    endpoints = ",".join(smoke.ENDPOINTS)
    for i, (zone, capacity) in enumerate([("us-east-1a", "ec2"), ("us-east-1b", "ec2"), ("us-east-1c", "ec2"),
                                         ("us-east-1a", "fargate")]):
        log = open(os.path.join(data, f"agent-{i}.log"), "w")
        args = [agent, "--runtime", "process", "--cluster", CLUSTER, "--endpoint", endpoints,
                "--capacity", capacity, "--attribute", f"ecs.availability-zone={zone}",
                "--cpu", "2048", "--memory", "4096", "--instance-id", f"i-tf{i}",
                "--log-dir", os.path.join(data, "agent-logs"), "--state-dir", os.path.join(data, f"agent-{i}")]
        smoke.extra_procs.append(smoke.spawn(args, log))
    deadline = time.time() + 60
    while len(smoke.aws("list-container-instances", "--cluster", CLUSTER)["containerInstanceArns"]) < 4:
        assert time.time() < deadline, "the agents did not register within 60 s"
        time.sleep(0.5)


def stop_agents_and_deregister():
    """Stops the agents, then deregisters their instances (forced: their tasks are stopped)."""
    for p in smoke.extra_procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in smoke.extra_procs:
        p.wait(timeout=30)
    smoke.extra_procs.clear()
    for arn in smoke.aws("list-container-instances", "--cluster", CLUSTER)["containerInstanceArns"]:
        smoke.aws("deregister-container-instance", "--cluster", CLUSTER, "--container-instance", arn, "--force")


def services_running():
    # Steady at once (terraform waited for it); COMPLETED once the tasks have settled (15 s).
    deadline = time.time() + 90
    while True:
        services = smoke.aws("describe-services", "--cluster", CLUSTER, "--services", "web", "worker",
                             "spot-worker", "--include", "TAGS")["services"]
        by_name = {s["serviceName"]: s for s in services}
        for name, want in (("web", 2), ("worker", 1), ("spot-worker", 1)):
            s = by_name[name]
            assert s["runningCount"] == want and len(s["deployments"]) == 1, s
        if all(s["deployments"][0]["rolloutState"] == "COMPLETED" for s in services):
            break
        assert time.time() < deadline, [s["deployments"] for s in services]
        time.sleep(1)
    web = by_name["web"]
    assert web["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}, web
    assert {"key": "tier", "value": "frontend"} in web["tags"], web["tags"]
    assert by_name["worker"]["launchType"] == "FARGATE", by_name["worker"]
    assert by_name["spot-worker"]["capacityProviderStrategy"][0]["capacityProvider"] == "FARGATE_SPOT"
    return by_name


def tasks_of(service):
    arns = smoke.aws("list-tasks", "--cluster", CLUSTER, "--service-name", service)["taskArns"]
    return smoke.aws("describe-tasks", "--cluster", CLUSTER, "--tasks", *arns, "--include", "TAGS")["tasks"]


def check_tasks():
    web = tasks_of("web")
    assert len(web) == 2 and all(t["lastStatus"] == "RUNNING" for t in web), web
    assert len({t["containerInstanceArn"] for t in web}) == 2, "distinctInstance"
    for t in web:
        tags = {x["key"]: x["value"] for x in t["tags"]}
        assert tags.get("tier") == "frontend" and tags.get("aws:ecs:clusterName") == CLUSTER, tags
        assert tags.get("aws:ecs:serviceName") == "web", tags
        assert t["launchType"] == "EC2" and t["attachments"] == [], t
    (worker,) = tasks_of("worker")
    assert worker["lastStatus"] == "RUNNING" and worker["launchType"] == "FARGATE", worker
    assert worker["capacityProviderName"] == "FARGATE" and worker["platformVersion"] == "1.4.0", worker
    assert "containerInstanceArn" not in worker, worker
    (eni,) = worker["attachments"]
    details = {d["name"]: d["value"] for d in eni["details"]}
    assert eni["type"] == "ElasticNetworkInterface" and eni["status"] == "ATTACHED", eni
    assert details["subnetId"] == "subnet-0a1b2c3d", details
    ip = details["privateIPv4Address"]
    assert worker["containers"][0]["networkInterfaces"] == [{"attachmentId": eni["id"], "privateIpv4Address": ip}]
    tags = {x["key"]: x["value"] for x in worker["tags"]}
    assert tags.get("app") == "fargate", f"propagated from the task definition: {tags}"
    (spot,) = tasks_of("spot-worker")
    assert spot["capacityProviderName"] == "FARGATE_SPOT" and spot["lastStatus"] == "RUNNING", spot
    if os.geteuid() == 0 and shutil.which("ip"):
        # The task runs in its own network namespace, with its address.
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        found = [n.split()[0] for n in namespaces.splitlines() if n.startswith("ecsd-")]
        addresses = [subprocess.run(["ip", "-n", n, "-4", "addr"], capture_output=True, text=True).stdout
                     for n in found]
        assert any(f"inet {ip}/30" in a for a in addresses), (ip, found, addresses)
        print(f"terraform smoke: the Fargate task runs in its own namespace at {ip}")
    else:
        print("terraform smoke: not root: the namespace of the Fargate task is not checked", file=sys.stderr)


def cluster_gone():
    (cluster,) = smoke.aws("describe-clusters", "--clusters", CLUSTER)["clusters"]
    assert cluster["status"] == "INACTIVE", cluster
    families = smoke.aws("list-task-definitions", "--family-prefix", "tf-")["taskDefinitionArns"]
    assert families == [], families


def main():
    if not shutil.which("terraform"):
        skip("terraform is not installed")
    if not shutil.which("aws"):
        raise SystemExit("the aws CLI is not installed (pip install awscli)")
    mirror = provider_mirror()
    atexit.register(smoke.stop_all)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, smoke.on_signal)
    data = tempfile.mkdtemp(prefix="ecsd-tf-")
    work = os.path.join(data, "tf")
    shutil.copytree(CONFIG_DIR, work)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["TF_IN_AUTOMATION"] = "1"
    env["CHECKPOINT_DISABLE"] = "1"
    if mirror:
        rc = os.path.join(data, "terraformrc")
        with open(rc, "w") as f:
            f.write('provider_installation {\n  filesystem_mirror {\n    path = "%s"\n    include = ["registry.terraform.io/*/*"]\n'
                    '  }\n  direct {\n    exclude = ["registry.terraform.io/*/*"]\n  }\n}\n' % mirror)
        env["TF_CLI_CONFIG_FILE"] = rc
    try:
        init = subprocess.run(["terraform", f"-chdir={work}", "init", "-input=false", "-no-color"], env=env,
                              capture_output=True, text=True, timeout=300)
        if init.returncode != 0:
            skip(f"terraform init could not install the AWS provider (no mirror found, no registry): "
                 f"{init.stderr.strip()[-500:]}")
        for attempt in (1, 2, 3):
            try:
                nodes = smoke.start_cluster(os.path.join(data, f"cluster-{attempt}"))
                break
            except smoke.StartFailed as e:
                smoke.stop_all()
                if attempt == 3:
                    raise SystemExit(f"terraform smoke: the cluster did not start: {e}")
        smoke.ENDPOINTS = [f"http://{n['api']}" for n in nodes]
        env["TF_VAR_endpoint"] = smoke.ENDPOINTS[1]
        plain = ["-input=false", "-no-color"]
        # The cluster first, as an operator would before starting agents on the hosts.
        smoke.check("apply the cluster", lambda: terraform(work, "apply", "-auto-approve", *plain,
                                                           "-target=aws_ecs_cluster.main", env=env))
        smoke.check("agents join the cluster", lambda: start_agents(data))
        smoke.check("apply everything (services wait for steady state)",
                    lambda: terraform(work, "apply", "-auto-approve", *plain, env=env))
        smoke.check("the services run their tasks", services_running)
        smoke.check("the tasks: placement, tags, Fargate's ENI and namespace", check_tasks)
        smoke.check("plan shows no changes",
                    lambda: terraform(work, "plan", "-detailed-exitcode", *plain, env=env))
        # A second endpoint: every node serves Terraform alike.
        env["TF_VAR_endpoint"] = smoke.ENDPOINTS[2]
        smoke.check("plan through another node shows no changes",
                    lambda: terraform(work, "plan", "-detailed-exitcode", *plain, env=env))
        smoke.check("destroy the services", lambda: terraform(
            work, "destroy", "-auto-approve", *plain, "-target=aws_ecs_service.web",
            "-target=aws_ecs_service.fargate", "-target=aws_ecs_service.spot", env=env))
        smoke.check("agents leave", stop_agents_and_deregister)
        smoke.check("destroy the rest", lambda: terraform(work, "destroy", "-auto-approve", *plain, env=env))
        smoke.check("nothing is left", cluster_gone)
    finally:
        smoke.stop_all()
        if smoke.failed:
            print(f"terraform smoke: data kept in {data}")
        else:
            shutil.rmtree(data, ignore_errors=True)
    print(f"terraform smoke: {smoke.passed} passed, {smoke.failed} failed")
    sys.exit(1 if smoke.failed else 0)


if __name__ == "__main__":
    main()

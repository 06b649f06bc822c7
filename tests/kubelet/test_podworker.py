# ruff: noqa: F811  (the fixtures come from kubelet_harness, parameters reuse their names)
"""Pod workers on real runc containers: what runs when, and what the status says.

Aspects: exit codes and phases under restartPolicy Never and OnFailure;
CrashLoopBackOff (waiting reason, growing restart count, lastState, BackOff events);
init containers run in order, each to success, and a failing one under Never fails
the pod; an OOM kill under a memory limit; a missing ConfigMap key is
CreateContainerConfigError until the key appears; an image that cannot be pulled is
ErrImagePull, then ImagePullBackOff; env from ConfigMaps, Secrets and the downward
API reaches the process.
"""

from __future__ import annotations

import asyncio
import base64

from kubelet_harness import (  # noqa: F401  (fixtures)
    Node,
    _remove_bridge,
    busybox_rootfs,
    condition,
    container_status,
    node,
)

from nanokube.api.resources.core import CONFIG_MAP, POD, SECRET


def phase(pod: dict) -> str:
    return str(pod.get("status", {}).get("phase", ""))


def pod_of(name: str, *containers: dict, **spec: object) -> dict:
    return {"metadata": {"name": name}, "spec": {"containers": list(containers), **spec}}


def sh(name: str, script: str, **extra: object) -> dict:
    return {"name": name, "command": ["sh", "-c", script], **extra}


async def test_restart_policy_never_records_exit_codes_and_fails(node: Node):
    await node.create_pod(
        pod_of("never", sh("ok", "exit 0"), sh("bad", "exit 7"), restartPolicy="Never")
    )
    pod = await node.wait_pod("never", lambda p: phase(p) == "Failed")
    ok = container_status(pod, "ok")["state"]["terminated"]
    bad = container_status(pod, "bad")["state"]["terminated"]
    assert (ok["exitCode"], ok["reason"]) == (0, "Completed")
    assert (bad["exitCode"], bad["reason"]) == (7, "Error")
    assert bad["containerID"].startswith("nanokube://") and bad["startedAt"] and bad["finishedAt"]
    assert container_status(pod, "bad")["restartCount"] == 0
    assert condition(pod, "Ready") == "False"
    ready = [c for c in pod["status"]["conditions"] if c["type"] == "Ready"][0]
    assert ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [ok bad]"


async def test_restart_policy_never_succeeds_when_all_exit_zero(node: Node):
    await node.create_pod(pod_of("done", sh("a", "exit 0"), restartPolicy="Never"))
    pod = await node.wait_pod("done", lambda p: phase(p) == "Succeeded")
    assert container_status(pod, "a")["state"]["terminated"]["reason"] == "Completed"
    ready = [c for c in pod["status"]["conditions"] if c["type"] == "Ready"][0]
    assert (ready["status"], ready["reason"]) == ("False", "PodCompleted")


async def test_restart_policy_on_failure_restarts_until_success(node: Node, tmp_path):
    marker = tmp_path / "marks"
    script = "echo x >> /m/runs; [ $(wc -l < /m/runs) -ge 2 ] && exit 0; exit 1"
    await node.create_pod(
        pod_of(
            "retry",
            sh("c", script, volumeMounts=[{"name": "m", "mountPath": "/m"}]),
            restartPolicy="OnFailure",
            volumes=[{"name": "m", "hostPath": {"path": str(marker)}}],
        )
    )
    pod = await node.wait_pod("retry", lambda p: phase(p) == "Succeeded")
    status = container_status(pod, "c")
    assert status["restartCount"] == 1
    assert status["state"]["terminated"]["exitCode"] == 0
    assert status["lastState"]["terminated"]["exitCode"] == 1


async def test_crash_loop_back_off(node: Node):
    await node.create_pod(pod_of("crash", sh("c", "exit 2")))
    pod = await node.wait_pod(
        "crash",
        lambda p: (
            container_status(p, "c").get("state", {}).get("waiting", {}).get("reason")
            == "CrashLoopBackOff"
        ),
    )
    status = container_status(pod, "c")
    assert status["restartCount"] >= 1
    assert status["lastState"]["terminated"]["exitCode"] == 2
    assert (
        "restarting failed container=c pod=crash_default(" in status["state"]["waiting"]["message"]
    )
    assert phase(pod) == "Running"
    pod = await node.wait_pod("crash", lambda p: container_status(p, "c")["restartCount"] >= 3)
    events = [e for e in await node.events("crash") if e["reason"] == "BackOff"]
    assert events and events[0]["message"].startswith(
        "Back-off restarting failed container c in pod crash_default("
    )
    assert events[0]["type"] == "Warning"


async def test_init_containers_run_in_order_before_the_app(node: Node, tmp_path):
    log = tmp_path / "log"
    mount = [{"name": "log", "mountPath": "/log"}]
    await node.create_pod(
        {
            "metadata": {"name": "ordered"},
            "spec": {
                "volumes": [{"name": "log", "hostPath": {"path": str(log)}}],
                "initContainers": [
                    sh("first", "sleep 0.2; echo first >> /log/order", volumeMounts=mount),
                    sh("second", "echo second >> /log/order", volumeMounts=mount),
                ],
                "containers": [sh("app", "echo app >> /log/order; sleep 1000", volumeMounts=mount)],
            },
        }
    )
    pod = await node.wait_pod("ordered", lambda p: condition(p, "Ready") == "True")
    assert (log / "order").read_text().split() == ["first", "second", "app"]
    assert condition(pod, "Initialized") == "True"
    for name in ("first", "second"):
        state = container_status(pod, name, init=True)["state"]
        assert state["terminated"]["reason"] == "Completed"


async def test_failing_init_container_fails_the_pod_under_never(node: Node):
    await node.create_pod(
        {
            "metadata": {"name": "badinit"},
            "spec": {
                "restartPolicy": "Never",
                "initContainers": [sh("setup", "exit 4")],
                "containers": [sh("app", "sleep 1000")],
            },
        }
    )
    pod = await node.wait_pod("badinit", lambda p: phase(p) == "Failed")
    assert container_status(pod, "setup", init=True)["state"]["terminated"]["exitCode"] == 4
    assert container_status(pod, "app")["state"]["waiting"]["reason"] == "PodInitializing"
    assert condition(pod, "Initialized") == "False"


async def test_failing_init_container_is_retried_with_back_off(node: Node):
    await node.create_pod(
        {
            "metadata": {"name": "retryinit"},
            "spec": {
                "initContainers": [sh("setup", "exit 4")],
                "containers": [sh("app", "sleep 1")],
            },
        }
    )
    pod = await node.wait_pod(
        "retryinit", lambda p: container_status(p, "setup", init=True).get("restartCount", 0) >= 2
    )
    assert phase(pod) == "Pending"
    assert container_status(pod, "app")["state"]["waiting"]["reason"] == "PodInitializing"


async def test_oom_kill_is_reported_as_oomkilled(node: Node):
    await node.create_pod(
        pod_of(
            "oom",
            sh(
                "hog",
                "head -c 200m /dev/zero | tail",
                resources={"limits": {"memory": "32Mi", "cpu": "1"}},
            ),
            restartPolicy="OnFailure",
        )
    )
    pod = await node.wait_pod("oom", lambda p: bool(container_status(p, "hog").get("lastState")))
    last = container_status(pod, "hog")["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("OOMKilled", 137)


async def test_missing_config_map_key_is_a_config_error_until_it_appears(node: Node):
    env = [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "hello"}}}]
    await node.create_pod(pod_of("cfgerr", sh("c", "sleep 1000", env=env)))
    pod = await node.wait_pod(
        "cfgerr",
        lambda p: (
            container_status(p, "c").get("state", {}).get("waiting", {}).get("reason")
            == "CreateContainerConfigError"
        ),
    )
    assert container_status(pod, "c")["state"]["waiting"]["message"] == 'configmap "cfg" not found'
    assert phase(pod) == "Pending"
    await node.client.create(
        CONFIG_MAP,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg"},
            "data": {"hello": "hi"},
        },
        "default",
    )
    await node.wait_pod("cfgerr", lambda p: phase(p) == "Running")


async def test_env_from_config_maps_secrets_and_the_downward_api(node: Node, tmp_path):
    out = tmp_path / "out"
    await node.client.create(
        CONFIG_MAP,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "app"},
            "data": {"MODE": "fast"},
        },
        "default",
    )
    await node.client.create(
        SECRET,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "data": {"token": base64.b64encode(b"s3cret").decode()},
        },
        "default",
    )
    env = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {
            "name": "MEM",
            "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
        },
        {"name": "GREETING", "value": "$(POD) in $(MODE) mode"},
    ]
    await node.create_pod(
        pod_of(
            "envs",
            {
                "name": "c",
                "command": ["sh", "-c", "env > /out/env; sleep 1000"],
                "env": env,
                "envFrom": [{"configMapRef": {"name": "app"}, "prefix": "CFG_"}],
                "volumeMounts": [{"name": "out", "mountPath": "/out"}],
            },
            volumes=[{"name": "out", "hostPath": {"path": str(out)}}],
        )
    )
    pod = await node.wait_pod("envs", lambda p: phase(p) == "Running")
    for _ in range(100):
        if (out / "env").exists() and (out / "env").read_text():
            break
        await asyncio.sleep(0.05)
    lines = set((out / "env").read_text().splitlines())
    assert {"TOKEN=s3cret", "POD=envs", "CFG_MODE=fast", "MEM=2048"} <= lines
    assert f"IP={pod['status']['podIP']}" in lines
    assert "GREETING=envs in $(MODE) mode" in lines  # MODE is CFG_MODE: left unexpanded


async def test_unpullable_image_is_err_image_pull_then_back_off(node: Node):
    await node.create_pod(
        pod_of("noimage", {"name": "c", "image": "registry.invalid/nope:1", "command": ["true"]})
    )
    pod = await node.wait_pod(
        "noimage",
        lambda p: (
            container_status(p, "c").get("state", {}).get("waiting", {}).get("reason")
            == "ImagePullBackOff"
        ),
    )
    assert container_status(pod, "c")["state"]["waiting"]["message"] == (
        'Back-off pulling image "registry.invalid/nope:1"'
    )
    reasons = [(e["reason"], e["message"]) for e in await node.events("noimage")]
    assert ("Pulling", 'Pulling image "registry.invalid/nope:1"') in reasons
    assert ("Failed", "Error: ErrImagePull") in reasons
    assert ("BackOff", 'Back-off pulling image "registry.invalid/nope:1"') in reasons


async def test_active_deadline_fails_the_pod(node: Node):
    await node.create_pod(pod_of("deadline", sh("c", "sleep 1000"), activeDeadlineSeconds=1))
    pod = await node.wait_pod("deadline", lambda p: phase(p) == "Failed")
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert (
        pod["status"]["message"] == "Pod was active on the node longer than the specified deadline"
    )
    pod = await node.wait_pod(
        "deadline", lambda p: "terminated" in container_status(p, "c")["state"]
    )
    assert container_status(pod, "c")["state"]["terminated"]["exitCode"] in (137, 143)


async def test_termination_messages_from_the_file_or_the_log(node: Node):
    await node.create_pod(
        pod_of(
            "msgs",
            sh("file", "echo 'all done' > /dev/termination-log; exit 0"),
            sh(
                "logs",
                "echo first; echo last words; exit 5",
                terminationMessagePolicy="FallbackToLogsOnError",
            ),
            sh("custom", "echo custom > /tmp/msg; exit 0", terminationMessagePath="/tmp/msg"),
            restartPolicy="Never",
        )
    )
    pod = await node.wait_pod("msgs", lambda p: phase(p) == "Failed")
    assert container_status(pod, "file")["state"]["terminated"]["message"] == "all done\n"
    assert container_status(pod, "logs")["state"]["terminated"]["message"] == "first\nlast words"
    assert container_status(pod, "custom")["state"]["terminated"]["message"] == "custom\n"
    await node.client.delete(POD, "msgs", "default")
    await node.wait_gone("msgs")
    files = node.base / "kubelet" / "pods" / pod["metadata"]["uid"]
    for _ in range(100):  # a terminal pod is deleted at once; the kubelet cleans up after
        if not files.exists():
            break
        await asyncio.sleep(0.05)
    assert not files.exists()

# ruff: noqa: F811  (the fixtures come from kubelet_harness, parameters reuse their names)
"""The Kubelet end to end on real runc containers (root, runc, busybox-static, CNI).

Aspects: a pod with an app and a native sidecar sharing localhost and a host
directory, its phases and conditions and container statuses; deletion stops it and
removes it from the API, with its log directory; an agent restart (in process, and a
``kill -9`` of an agent process) re-adopts running containers without restarting them
and keeps restart counts; an idle pod costs no status writes after a restart;
sandboxes of pods no longer bound here are removed at start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys

from kubelet_harness import (  # noqa: F401  (fixtures)
    HOST_IP,
    Node,
    _remove_bridge,
    busybox_rootfs,
    condition,
    container_status,
    node,
)

from nanokube.api.resources.core import POD
from nanokube.runtime.contract import SandboxConfig


def running(pod: dict) -> bool:
    return pod.get("status", {}).get("phase") == "Running"


async def test_app_and_sidecar_share_localhost_and_a_directory(node: Node, tmp_path):
    shared = tmp_path / "shared"
    pod = await node.create_pod(
        {
            "metadata": {"name": "web"},
            "spec": {
                "volumes": [{"name": "data", "hostPath": {"path": str(shared)}}],
                "initContainers": [
                    {
                        "name": "server",
                        "restartPolicy": "Always",
                        "command": ["nc", "-ll", "-p", "8080", "-e", "echo", "hello"],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }
                ],
                "containers": [
                    {
                        "name": "app",
                        "command": [
                            "sh",
                            "-c",
                            "until [ -s /data/got ]; do nc 127.0.0.1 8080 > /data/got; sleep 0.1; done; "
                            "sleep 1000",
                        ],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }
                ],
            },
        }
    )
    pod = await node.wait_pod("web", lambda p: condition(p, "Ready") == "True")
    status = pod["status"]
    assert status["phase"] == "Running"
    assert status["podIP"].startswith("10.196.0.") and status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIP"] == HOST_IP and status["hostIPs"] == [{"ip": HOST_IP}]
    assert status["qosClass"] == "BestEffort" and status["startTime"]
    for ctype in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "PodScheduled"):
        assert condition(pod, ctype) == "True", ctype
    app = container_status(pod, "app")
    assert app["ready"] and app["started"] and app["restartCount"] == 0
    assert "running" in app["state"] and app["containerID"].startswith("nanokube://")
    assert app["image"] == "busybox" and app["imageID"] == "nanokube.local/busybox@sha256:0"
    sidecar = container_status(pod, "server", init=True)
    assert sidecar["ready"] and sidecar["started"] and "running" in sidecar["state"]
    for _ in range(100):
        if (shared / "got").exists() and (shared / "got").read_text():
            break
        await asyncio.sleep(0.05)
    assert (shared / "got").read_text() == "hello\n"
    events = {(e["reason"], e["message"]) for e in await node.events("web")}
    assert ("Started", "Started container app") in events
    assert ("Created", "Created container server") in events
    assert ("Pulled", 'Container image "busybox" already present on machine') in events

    log_dir = node.runtime.paths.log_dir
    assert os.listdir(log_dir) == [f"default_web_{pod['metadata']['uid']}"]
    await node.client.delete(POD, "web", "default")
    await node.wait_gone("web")
    assert await node.runtime.list_sandboxes() == []
    assert os.listdir(log_dir) == []
    assert pod["metadata"]["uid"] not in node.kubelet.workers


async def test_agent_restart_readopts_containers_and_keeps_restart_counts(node: Node):
    await node.create_pod(
        {
            "metadata": {"name": "flaky"},
            "spec": {
                "containers": [
                    {"name": "steady", "command": ["sleep", "1000"]},
                    {"name": "crashy", "command": ["sh", "-c", "sleep 0.2; exit 3"]},
                ]
            },
        }
    )
    pod = await node.wait_pod(
        "flaky", lambda p: container_status(p, "crashy").get("restartCount", 0) >= 2
    )
    steady_id = container_status(pod, "steady")["containerID"]
    await node.restart_agent()
    await asyncio.sleep(0.5)
    pod = await node.get_pod("flaky")
    steady = container_status(pod, "steady")
    assert steady["containerID"] == steady_id and steady["restartCount"] == 0
    assert "running" in steady["state"]
    before = container_status(pod, "crashy")["restartCount"]
    assert before >= 2
    pod = await node.wait_pod(
        "flaky", lambda p: container_status(p, "crashy")["restartCount"] > before
    )
    assert container_status(pod, "steady")["containerID"] == steady_id
    assert container_status(pod, "crashy")["lastState"]["terminated"]["exitCode"] == 3


async def test_idle_pod_costs_no_status_writes_after_an_agent_restart(node: Node):
    await node.create_pod(
        {
            "metadata": {"name": "idle"},
            "spec": {"containers": [{"name": "c", "command": ["sleep", "1000"]}]},
        }
    )
    pod = await node.wait_pod("idle", running)
    await node.restart_agent()
    await asyncio.sleep(0.5)
    assert node.kubelet.status_manager.writes == 0
    assert (await node.get_pod("idle"))["metadata"]["resourceVersion"] == pod["metadata"][
        "resourceVersion"
    ]


async def test_orphaned_sandboxes_are_removed_at_start(node: Node):
    orphan = await node.runtime.create_sandbox(
        SandboxConfig(uid="no-such-pod", name="gone", namespace="default")
    )
    await node.restart_agent()
    assert orphan.id not in {s.id for s in await node.runtime.list_sandboxes()}


AGENT = """
import asyncio, json, sys
from pathlib import Path
sys.path[:0] = [sys.argv[1], str(Path(sys.argv[1]).parent)]  # the harness and tests/support.py
from kubelet_harness import IMAGE, make_runtime
from nanokube.client.http import HTTPClient
from nanokube.kubelet.kubelet import Kubelet, KubeletConfig
from nanokube.kubelet.services import HostPathVolumes, ResolvedImage, StaticImages
from nanokube.runtime import testimage

async def main():
    base, url, rootfs = Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    config, owner = json.loads(sys.argv[5]), int(sys.argv[6])
    images = StaticImages({IMAGE: ResolvedImage([rootfs], testimage.IMAGE_CONFIG, "id")})
    kubelet = Kubelet(
        HTTPClient(url), make_runtime(base, owner), images, HostPathVolumes(str(base / "volumes")),
        KubeletConfig(**config),
    )
    await kubelet.start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_kill_9_of_an_agent_process_leaves_containers_to_the_next(node: Node, busybox_rootfs):
    await node.kubelet.stop()
    config = dataclasses.asdict(node.config)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        AGENT,
        os.path.dirname(__file__),
        str(node.base),
        f"http://127.0.0.1:{node.server.config.port}",
        str(busybox_rootfs),
        json.dumps(config),
        str(os.getpid()),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"ready\n"
        await node.create_pod(
            {
                "metadata": {"name": "survivor"},
                "spec": {
                    "containers": [
                        {"name": "steady", "command": ["sleep", "1000"]},
                        {"name": "crashy", "command": ["sh", "-c", "sleep 0.2; exit 3"]},
                    ]
                },
            }
        )
        pod = await node.wait_pod(
            "survivor", lambda p: container_status(p, "crashy").get("restartCount", 0) >= 1
        )
    finally:
        proc.kill()
        await proc.wait()
    steady = container_status(pod, "steady")
    by_id = {c.id: c for c in await node.runtime.list_containers()}
    assert by_id[steady["containerID"].removeprefix("nanokube://")].state == "running"
    restarts = container_status(await node.get_pod("survivor"), "crashy")["restartCount"]
    await node.restart_agent()
    pod = await node.wait_pod(
        "survivor", lambda p: container_status(p, "crashy")["restartCount"] > restarts
    )
    assert container_status(pod, "steady")["containerID"] == steady["containerID"]
    assert container_status(pod, "steady")["restartCount"] == 0

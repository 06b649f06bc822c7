# ruff: noqa: F811  (the fixtures come from kubelet_harness, parameters reuse their names)
"""Probes: the handlers against local servers, and probes of real containers.

Aspects: httpGet success and status-code failure, tcpSocket success and refusal,
named ports; a failing liveness exec probe kills and restarts the container (Unhealthy
and Killing events, the restart count rises); readiness gates the container's
``ready`` and the pod's Ready/ContainersReady conditions both ways; a startup probe
holds ``started`` and readiness until it passes.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest
from aiohttp import web
from kubelet_harness import (  # noqa: F401  (fixtures)
    Node,
    _remove_bridge,
    busybox_rootfs,
    condition,
    container_status,
    node,
)
from support import free_port

from nanokube.kubelet import probes


async def serve(status: int) -> tuple[web.AppRunner, int]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text=request.headers.get("X-Probe", "body"))

    app = web.Application()
    app.router.add_get("/healthz", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


async def test_http_get_success_and_failure_by_status_code():
    ok, ok_port = await serve(200)
    bad, bad_port = await serve(503)
    try:
        container = {"name": "c", "ports": [{"name": "http", "containerPort": ok_port}]}
        outcome = await probes.http_get(
            {"port": "http", "path": "healthz", "httpHeaders": [{"name": "X-Probe", "value": "v"}]},
            container,
            "127.0.0.1",
            1,
        )
        assert outcome == probes.Outcome(True, "v")
        outcome = await probes.http_get({"port": bad_port, "path": "/healthz"}, {}, "127.0.0.1", 1)
        assert outcome == probes.Outcome(False, "HTTP probe failed with statuscode: 503")
    finally:
        await ok.cleanup()
        await bad.cleanup()


async def test_tcp_socket_connects_or_is_refused():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert (await probes.tcp_socket({"port": port}, {}, "127.0.0.1", 1)).ok
    refused = await probes.tcp_socket({"port": port}, {}, "127.0.0.1", 1)
    assert not refused.ok and refused.message.startswith(f"dial tcp 127.0.0.1:{port}: connect:")


async def test_grpc_probe_fails_cleanly_without_a_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outcome = await probes.grpc_check("127.0.0.1", port, "", 1)
    assert not outcome.ok and "failed to connect service" in outcome.message


async def test_liveness_failure_restarts_the_container(node: Node):
    await node.create_pod(
        {
            "metadata": {"name": "live"},
            "spec": {
                "containers": [
                    {
                        "name": "c",
                        "command": ["sh", "-c", "touch /tmp/alive; sleep 1000"],
                        "livenessProbe": {
                            "exec": {"command": ["sh", "-c", "rm /tmp/alive"]},
                            "periodSeconds": 1,
                            "failureThreshold": 2,
                        },
                    }
                ]
            },
        }
    )
    pod = await node.wait_pod(
        "live", lambda p: container_status(p, "c").get("restartCount", 0) >= 1
    )
    last = container_status(pod, "c")["lastState"]["terminated"]
    assert last["exitCode"] in (137, 143)
    events = [(e["reason"], e["message"]) for e in await node.events("live")]
    assert ("Killing", "Container c failed liveness probe, will be restarted") in events
    assert any(
        reason == "Unhealthy" and message.startswith("Liveness probe failed: rm:")
        for reason, message in events
    )


async def test_readiness_gates_ready_both_ways(node: Node, tmp_path):
    flag = tmp_path / "flag"
    flag.mkdir()
    await node.create_pod(
        {
            "metadata": {"name": "ready"},
            "spec": {
                "volumes": [{"name": "flag", "hostPath": {"path": str(flag)}}],
                "containers": [
                    {
                        "name": "c",
                        "command": ["sleep", "1000"],
                        "volumeMounts": [{"name": "flag", "mountPath": "/flag"}],
                        "readinessProbe": {
                            "exec": {"command": ["test", "-e", "/flag/ready"]},
                            "periodSeconds": 1,
                            "failureThreshold": 1,
                        },
                    }
                ],
            },
        }
    )
    pod = await node.wait_pod("ready", lambda p: container_status(p, "c").get("started", False))
    assert condition(pod, "Ready") == "False" and not container_status(pod, "c")["ready"]
    assert pod["status"]["phase"] == "Running"
    (flag / "ready").touch()
    pod = await node.wait_pod("ready", lambda p: condition(p, "Ready") == "True")
    assert condition(pod, "ContainersReady") == "True" and container_status(pod, "c")["ready"]
    (flag / "ready").unlink()
    pod = await node.wait_pod("ready", lambda p: condition(p, "Ready") == "False")
    assert container_status(pod, "c")["restartCount"] == 0


async def test_startup_probe_holds_started_until_it_passes(node: Node, tmp_path):
    await node.create_pod(
        {
            "metadata": {"name": "slow"},
            "spec": {
                "containers": [
                    {
                        "name": "c",
                        "command": ["sh", "-c", "sleep 1; touch /tmp/up; sleep 1000"],
                        "startupProbe": {
                            "exec": {"command": ["test", "-e", "/tmp/up"]},
                            "periodSeconds": 1,
                            "failureThreshold": 10,
                        },
                    }
                ]
            },
        }
    )
    pod = await node.wait_pod(
        "slow", lambda p: "running" in container_status(p, "c").get("state", {})
    )
    assert not container_status(pod, "c")["started"]
    pod = await node.wait_pod("slow", lambda p: condition(p, "Ready") == "True")
    assert container_status(pod, "c")["started"] and container_status(pod, "c")["restartCount"] == 0


@pytest.fixture
def etcd(tmp_path) -> Iterator[int]:
    """A real gRPC server with the standard health service: etcd (etcd-server)."""
    binary = shutil.which("etcd")
    if binary is None:
        pytest.skip("the gRPC probe test needs etcd (apt-get install etcd-server)")
    client_port, peer_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--data-dir",
            str(tmp_path / "etcd"),
            "--listen-client-urls",
            f"http://127.0.0.1:{client_port}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{client_port}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--initial-cluster",
            f"default=http://127.0.0.1:{peer_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield client_port
    finally:
        proc.terminate()
        proc.wait(10)


async def test_grpc_probe_against_a_real_health_service(etcd: int):
    for _ in range(100):
        outcome = await probes.grpc_check("127.0.0.1", etcd, "", 1)
        if outcome.ok:
            break
        await asyncio.sleep(0.05)
    assert outcome == probes.Outcome(True)
    unknown = await probes.grpc_check("127.0.0.1", etcd, "no.such.Service", 1)
    assert not unknown.ok and unknown.message.startswith("rpc error"), unknown

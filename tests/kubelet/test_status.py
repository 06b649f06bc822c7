"""Pod status computation (upstream's getPhase and conditions) and minimal writes.

Aspects: phases under each restart policy, init containers, deletion; terminal phases
are final; container states, lastState and IDs; condition transition times survive
an unchanged status; the status manager writes through pods/status only when
something changed and leaves other components' conditions alone.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from nanokube.api.resources.core import POD
from nanokube.apiserver import patching
from nanokube.apiserver.server import APIServerConfig, start
from nanokube.client.inprocess import InProcessClient
from nanokube.kubelet import status
from nanokube.kubelet.status import ContainerView, PodView
from nanokube.runtime.contract import ContainerStatus
from nanokube.storage.memory import MemoryStore


def instance(
    state: str, exit_code: int | None = None, attempt: int = 0, reason: str = "", cid: str = ""
) -> ContainerStatus:
    return ContainerStatus(
        id=cid or f"id{attempt}",
        sandbox_id="sb",
        name="c",
        state=state,  # type: ignore[arg-type]
        created_at=100.0,
        started_at=101.0,
        finished_at=102.0 if state == "exited" else None,
        exit_code=exit_code,
        reason=reason or ("" if exit_code is None else "Completed" if exit_code == 0 else "Error"),
        attempt=attempt,
    )


def view(*latest: ContainerStatus | None, **kw: object) -> PodView:
    return PodView(
        sandbox_ready=True,
        containers=[
            ContainerView(name=f"c{i}", image="busybox", latest=s) for i, s in enumerate(latest)
        ],
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("policy", "states", "expected"),
    [
        ("Always", [None], "Pending"),
        ("Always", [instance("running")], "Running"),
        ("Always", [instance("running"), None], "Pending"),
        ("Always", [instance("exited", 0)], "Running"),
        ("Never", [instance("exited", 0), instance("exited", 0)], "Succeeded"),
        ("Never", [instance("exited", 0), instance("exited", 1)], "Failed"),
        ("Never", [instance("exited", 1), instance("running")], "Running"),
        ("OnFailure", [instance("exited", 0)], "Succeeded"),
        ("OnFailure", [instance("exited", 1)], "Running"),
    ],
)
def test_phase(policy: str, states: list, expected: str):
    assert status.phase({"restartPolicy": policy}, view(*states)) == expected


def test_phase_pending_during_init_and_failed_when_init_fails_under_never():
    v = view(None)
    v.init = [ContainerView(name="init", image="busybox", latest=instance("running"))]
    assert status.phase({}, v) == "Pending"
    v.init_failed = True
    assert status.phase({"restartPolicy": "Never"}, v) == "Failed"


def test_phase_after_a_stop_for_deletion():
    v = view(instance("exited", 143), stopped_for_deletion=True)
    assert status.phase({"restartPolicy": "Always"}, v) == "Failed"
    v = view(instance("exited", 0), stopped_for_deletion=True)
    assert status.phase({"restartPolicy": "Always"}, v) == "Succeeded"


def test_terminal_phase_is_final():
    pod = {"metadata": {}, "spec": {"containers": [{"name": "c0"}]}, "status": {"phase": "Failed"}}
    assert status.compute(pod, view(instance("running")))["phase"] == "Failed"


def test_container_states():
    crash = ContainerView(
        name="c",
        image="busybox",
        latest=instance("exited", 137, attempt=2, reason="OOMKilled", cid="abc"),
        restart_count=2,
        waiting=("CrashLoopBackOff", "back-off 20s"),
    )
    s = status.container_status(crash, "ContainerCreating")
    assert s["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}}
    last = s["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"], last["containerID"]) == (
        137,
        "OOMKilled",
        "nanokube://abc",
    )
    assert s["restartCount"] == 2 and not s["ready"] and not s["started"]
    running = ContainerView(
        name="c",
        image="busybox",
        latest=instance("running", attempt=1, cid="new"),
        previous=instance("exited", 1, cid="old"),
        ready=True,
        started=True,
    )
    s = status.container_status(running, "ContainerCreating")
    assert s["state"] == {"running": {"startedAt": "1970-01-01T00:01:41Z"}}
    assert s["lastState"]["terminated"]["exitCode"] == 1
    assert s["ready"] and s["started"] and s["containerID"] == "nanokube://new"
    fresh = status.container_status(ContainerView(name="c", image="x"), "PodInitializing")
    assert (
        fresh["state"] == {"waiting": {"reason": "PodInitializing"}} and "containerID" not in fresh
    )


def test_conditions_keep_their_transition_times_and_messages():
    pod = {
        "metadata": {},
        "spec": {"containers": [{"name": "c0"}], "readinessGates": [{"conditionType": "x/gate"}]},
        "status": {},
    }
    v = view(instance("running"))
    v.containers[0].ready = True
    first = status.compute(pod, v, now=1000)
    pod["status"] = first
    again = status.compute(pod, v, now=2000)
    assert first["conditions"] == again["conditions"]
    conds = {c["type"]: c for c in again["conditions"]}
    assert conds["ContainersReady"]["status"] == "True"
    assert conds["Ready"]["reason"] == "ReadinessGatesNotReady"
    assert conds["PodScheduled"]["status"] == "True"
    v.containers[0].ready = False
    later = {c["type"]: c for c in status.compute(pod, v, now=3000)["conditions"]}
    assert later["ContainersReady"]["lastTransitionTime"] == "1970-01-01T00:50:00Z"
    assert later["ContainersReady"]["message"] == "containers with unready status: [c0]"


@pytest.fixture
async def client() -> AsyncIterator[InProcessClient]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server, runner = await start(APIServerConfig(store=MemoryStore(), port=port))
    try:
        yield InProcessClient(server.resources, patching.patch)
    finally:
        await server.cache.stop()
        await runner.cleanup()


async def test_status_manager_writes_only_changes_and_keeps_foreign_conditions(client):
    pod = await client.create(
        POD,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "n", "containers": [{"name": "c0", "image": "busybox"}]},
        },
    )
    pod = await client.patch(
        POD,
        "p",
        {"status": {"conditions": [{"type": "DisruptionTarget", "status": "True"}]}},
        "default",
        subresource="status",
    )
    manager = status.StatusManager(client)
    computed = status.compute(pod, view(instance("running")))
    written = await manager.update(pod, computed)
    assert written is not None and manager.writes == 1
    types = {c["type"] for c in written["status"]["conditions"]}
    assert {"DisruptionTarget", "Ready", "PodScheduled"} <= types
    assert written["status"]["phase"] == "Running"
    assert await manager.update(written, status.compute(written, view(instance("running")))) is None
    assert manager.writes == 1

# ruff: noqa: F811  (the fixtures come from kubelet_harness, parameters reuse their names)
"""Hooks and graceful stops on real containers.

Aspects: a preStop hook runs on delete before SIGTERM, and the pod is gone from the
API once stopped, within its grace period; a container that ignores SIGTERM is
SIGKILLed when the grace period ends; postStart runs before the container counts as
started, and a failing postStart kills the container (FailedPostStartHook); sidecars
stop after the app containers.
"""

from __future__ import annotations

import time

from kubelet_harness import (  # noqa: F401  (fixtures)
    Node,
    _remove_bridge,
    busybox_rootfs,
    condition,
    container_status,
    node,
)

from nanokube.api.resources.core import POD


def mount(name: str = "out") -> list[dict]:
    return [{"name": name, "mountPath": "/out"}]


async def test_pre_stop_runs_on_delete_and_the_pod_goes_within_its_grace(node: Node, tmp_path):
    out = tmp_path / "out"
    await node.create_pod(
        {
            "metadata": {"name": "stopper"},
            "spec": {
                "terminationGracePeriodSeconds": 10,
                "volumes": [{"name": "out", "hostPath": {"path": str(out)}}],
                "containers": [
                    {
                        "name": "c",
                        "command": [
                            "sh",
                            "-c",
                            "trap 'echo term >> /out/log; exit 0' TERM; "
                            "while true; do sleep 0.1; done",
                        ],
                        "volumeMounts": mount(),
                        "lifecycle": {
                            "preStop": {
                                "exec": {"command": ["sh", "-c", "echo prestop >> /out/log"]}
                            }
                        },
                    }
                ],
            },
        }
    )
    await node.wait_pod("stopper", lambda p: condition(p, "Ready") == "True")
    began = time.monotonic()
    await node.client.delete(POD, "stopper", "default")
    await node.wait_gone("stopper", timeout=15)
    took = time.monotonic() - began
    assert (out / "log").read_text().split() == ["prestop", "term"]
    assert took < 10, f"took {took:.1f}s: the grace period ran out"
    events = [(e["reason"], e["message"]) for e in await node.events("stopper")]
    assert ("Killing", "Stopping container c") in events
    assert await node.runtime.list_sandboxes() == []


async def test_sigterm_ignored_means_sigkill_after_the_grace_period(node: Node):
    await node.create_pod(
        {
            "metadata": {"name": "stubborn"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "c",
                        "command": ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"],
                    }
                ],
            },
        }
    )
    await node.wait_pod("stubborn", lambda p: p["status"]["phase"] == "Running")
    await node.client.delete(POD, "stubborn", "default")
    await node.wait_gone("stubborn", timeout=10)
    assert await node.runtime.list_containers() == []


async def test_post_start_runs_before_started(node: Node, tmp_path):
    out = tmp_path / "out"
    await node.create_pod(
        {
            "metadata": {"name": "poststart"},
            "spec": {
                "volumes": [{"name": "out", "hostPath": {"path": str(out)}}],
                "containers": [
                    {
                        "name": "c",
                        "command": ["sleep", "1000"],
                        "volumeMounts": mount(),
                        "lifecycle": {
                            "postStart": {"exec": {"command": ["sh", "-c", "echo hook > /out/h"]}}
                        },
                    }
                ],
            },
        }
    )
    await node.wait_pod("poststart", lambda p: condition(p, "Ready") == "True")
    assert (out / "h").read_text() == "hook\n"


async def test_failing_post_start_kills_the_container(node: Node):
    await node.create_pod(
        {
            "metadata": {"name": "badhook"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "c",
                        "command": ["sleep", "1000"],
                        "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "exit 1"]}}},
                    }
                ],
            },
        }
    )
    pod = await node.wait_pod("badhook", lambda p: p["status"]["phase"] == "Failed")
    assert container_status(pod, "c")["state"]["terminated"]["exitCode"] in (137, 143)
    reasons = {e["reason"] for e in await node.events("badhook")}
    assert "FailedPostStartHook" in reasons


async def test_sidecars_stop_after_the_app(node: Node, tmp_path):
    out = tmp_path / "out"
    trap = "trap 'echo {0} >> /out/log; sleep 0.3; exit 0' TERM; while true; do sleep 0.1; done"
    await node.create_pod(
        {
            "metadata": {"name": "order"},
            "spec": {
                "volumes": [{"name": "out", "hostPath": {"path": str(out)}}],
                "initContainers": [
                    {
                        "name": "side",
                        "restartPolicy": "Always",
                        "command": ["sh", "-c", trap.format("side")],
                        "volumeMounts": mount(),
                    }
                ],
                "containers": [
                    {
                        "name": "app",
                        "command": ["sh", "-c", trap.format("app")],
                        "volumeMounts": mount(),
                    }
                ],
            },
        }
    )
    await node.wait_pod("order", lambda p: condition(p, "Ready") == "True")
    await node.client.delete(POD, "order", "default")
    await node.wait_gone("order")
    assert (out / "log").read_text().split() == ["app", "side"]

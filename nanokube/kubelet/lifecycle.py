"""Lifecycle hooks and the graceful stop of containers and pods.

Upstream's rules (``kuberuntime_container.go`` ``killContainer``,
``killContainersWithSyncResult``, ``lifecycle/handlers.go``):

- ``postStart`` runs right after the container started; the container does not
  count as started until it returns, and if it fails the container is killed
  (event ``FailedPostStartHook``) and restarted per ``restartPolicy``.
- Stopping a container: event ``Killing`` ("Stopping container x"), run ``preStop``
  (bounded by the grace period), then SIGTERM, wait what is left of the grace period
  (at least 2 s, upstream's ``minimumGracePeriodInSeconds``, unless the grace is 0:
  a forced kill), then SIGKILL. A failing preStop only records
  ``FailedPreStopHook``; the stop goes on.
- Stopping a pod: the app containers in parallel, then the sidecars (init containers
  with ``restartPolicy: Always``) one by one in reverse order, with what is left of
  the pod's grace period.

Hook handlers are ``exec``, ``httpGet`` and ``sleep`` (``tcpSocket`` is deprecated and
accepted as a no-op success, as upstream).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nanokube.kubelet import probes
from nanokube.runtime.contract import NotFound, Runtime, RuntimeFailure

log = logging.getLogger(__name__)

Obj = dict[str, Any]
MIN_GRACE = 2.0
EventSink = Callable[[str, str, str], None]


async def run_hook(
    handler: Obj, runtime: Runtime, container_id: str, container: Obj, pod_ip: str, timeout: float
) -> probes.Outcome:
    if "sleep" in handler:
        await asyncio.sleep(min(float(handler["sleep"].get("seconds") or 0), timeout))
        return probes.Outcome(True)
    if "tcpSocket" in handler:
        return probes.Outcome(True)
    return await probes.run_handler(handler, runtime, container_id, container, pod_ip, timeout)


async def post_start(
    runtime: Runtime,
    container_id: str,
    container: Obj,
    pod_ip: str,
    timeout: float,
    event: EventSink,
) -> bool:
    """Run the postStart hook if there is one; False (after the event) if it failed."""
    handler = (container.get("lifecycle") or {}).get("postStart")
    if not handler:
        return True
    outcome = await run_hook(handler, runtime, container_id, container, pod_ip, timeout)
    if outcome.ok:
        return True
    kind = "Exec" if "exec" in handler else "HTTP"
    event(
        "Warning",
        "FailedPostStartHook",
        f'{kind} lifecycle hook ({_describe(handler)}) for Container "{container["name"]}" '
        f"failed - error: {outcome.message}",
    )
    return False


def _describe(handler: Obj) -> str:
    if "exec" in handler:
        return str(handler["exec"].get("command") or [])
    if "httpGet" in handler:
        return str(handler["httpGet"].get("path") or "/")
    return ""


@dataclass
class Running:
    """A container instance to stop, with its spec."""

    container_id: str
    container: Obj
    sidecar: bool = False


async def stop_container(
    runtime: Runtime,
    target: Running,
    pod_ip: str,
    grace: float,
    event: EventSink,
    message: str = "",
) -> None:
    """Stop one container as the kubelet does: Killing event, preStop, SIGTERM, the rest
    of the grace period, SIGKILL. Already-exited or vanished containers are fine."""
    name = target.container["name"]
    event("Normal", "Killing", message or f"Stopping container {name}")
    started = time.monotonic()
    handler = (target.container.get("lifecycle") or {}).get("preStop")
    if handler and grace > 0:
        try:
            outcome = await asyncio.wait_for(
                run_hook(handler, runtime, target.container_id, target.container, pod_ip, grace),
                grace,
            )
        except TimeoutError:
            outcome = probes.Outcome(False, f"timed out after {grace:g}s")
        except RuntimeFailure as e:  # the container exited meanwhile
            outcome = probes.Outcome(False, str(e))
        if not outcome.ok:
            kind = "Exec" if "exec" in handler else "HTTP"
            event(
                "Warning",
                "FailedPreStopHook",
                f'{kind} lifecycle hook ({_describe(handler)}) for Container "{name}" '
                f"failed - error: {outcome.message}",
            )
    remaining = 0.0 if grace <= 0 else max(grace - (time.monotonic() - started), MIN_GRACE)
    with contextlib.suppress(NotFound):
        await runtime.stop_container(target.container_id, remaining)


async def stop_pod(
    runtime: Runtime, running: list[Running], pod_ip: str, grace: float, event: EventSink
) -> None:
    """App containers together, then sidecars in reverse start order, within `grace`."""
    deadline = time.monotonic() + grace
    apps = [r for r in running if not r.sidecar]
    sidecars = [r for r in running if r.sidecar]
    await asyncio.gather(*(stop_container(runtime, r, pod_ip, grace, event) for r in apps))
    for r in reversed(sidecars):
        left = 0.0 if grace <= 0 else max(deadline - time.monotonic(), MIN_GRACE)
        await stop_container(runtime, r, pod_ip, left, event)

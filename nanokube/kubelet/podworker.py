"""One worker per pod: drive the pod's containers to its spec and report their status.

A `PodWorker` is a task that sleeps until woken (the pod changed, a container
changed state, a probe result changed, a back-off ended) and then runs one `sync`,
upstream's ``SyncPod`` with ``computePodActions`` folded in:

1. a pod being deleted (or gone from the API) is stopped gracefully (lifecycle.py),
   its sandbox and volumes removed, its final status written, and the API object
   deleted with grace period 0 — the confirmation the API server waits for;
2. volumes are set up and the sandbox (namespaces, IP) created once;
3. containers are read back from the runtime, never remembered: each instance carries
   its restart count as its ``attempt``, so a new agent re-adopts running containers
   with their counts and starts nothing twice;
4. a liveness or startup probe failure, or a changed image, kills the instance;
5. init containers run in order, each to success (a failure restarts it with
   back-off, or fails the pod under ``restartPolicy: Never``); sidecars (init
   containers with ``restartPolicy: Always``) start in order, the next waiting until
   the previous has *started* (its startup probe passed), and restart whenever they
   exit;
6. then the app containers start, and restart per ``restartPolicy`` with
   CrashLoopBackOff (podstart.py);
7. once the pod is terminal (Succeeded/Failed, or Failed with DeadlineExceeded when
   ``activeDeadlineSeconds`` ran out) what still runs is stopped and its network
   released; the exited containers stay for their logs until the pod is deleted;
8. the status is computed (status.py) and written if it changed.

Each instance kept per container: the latest and the one before it (``lastState``);
older ones are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nanokube.api import errors, meta
from nanokube.api.resources.core import POD, SECRET
from nanokube.client.events import EventRecorder
from nanokube.client.interface import Client
from nanokube.kubelet import lifecycle, podconfig, podstart, termination
from nanokube.kubelet import status as podstatus
from nanokube.kubelet.backoff import Backoff
from nanokube.kubelet.probes import ProbeManager, ProbeTarget
from nanokube.kubelet.services import ImagePullError, ImageService, VolumeManager
from nanokube.runtime.contract import (
    ContainerStatus,
    NotFound,
    Runtime,
    RuntimeFailure,
    SandboxStatus,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]
RETRY_AFTER_ERROR = 1.0
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


@dataclass
class WorkerDeps:
    """What every pod worker shares: the node's clients, runtime and managers."""

    client: Client
    runtime: Runtime
    images: ImageService
    volumes: VolumeManager
    status: podstatus.StatusManager
    events: EventRecorder
    node_name: str
    host_ip: str
    backoff: Backoff = field(default_factory=Backoff)
    image_backoff: Backoff = field(default_factory=Backoff)
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    node_allocatable: dict[str, str] = field(default_factory=dict)
    config_retry: float = 10.0
    """Seconds before retrying a container whose config could not be built."""
    root_dir: str = ""
    """The kubelet's own files (termination message files); empty: none."""
    started_at: float = field(default_factory=time.time)
    """When this agent started: containers running before it are re-adopted."""


class PodWorker:
    def __init__(self, deps: WorkerDeps, pod: Obj, on_done: Callable[[str], None]) -> None:
        self.deps = deps
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.on_done = on_done
        self.gone = False
        self.sandbox: SandboxStatus | None = None
        self.volume_paths: dict[str, str] | None = None
        self.waiting: dict[str, tuple[str, str]] = {}
        self.image_ids: dict[str, str] = {}
        self.pull_failures: dict[str, float] = {}
        self.probes = ProbeManager(deps.runtime, self.wake, self.event)
        self.first_seen = time.time()
        self._wake = asyncio.Event()
        self._due: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.syncs = 0

    # --- control from the kubelet ------------------------------------------------------

    def start(self) -> None:
        md = self.pod["metadata"]
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"pod-{md.get('namespace')}/{md['name']}"
        )
        self.wake()

    def update(self, pod: Obj, wake: bool = True) -> None:
        """The pod as the API has it now; `wake` to sync it (not for its status alone)."""
        self.pod = pod
        if wake:
            self.wake()

    def removed(self) -> None:
        """The pod left the API (deleted, or no longer bound here)."""
        self.gone = True
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def wake_at(self, when: float) -> None:
        if self._due is None or when < self._due:
            self._due = when

    async def stop(self) -> None:
        """Stop the worker, leaving its containers as they are (agent shutdown)."""
        self.probes.stop()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def event(self, type_: str, reason: str, message: str) -> None:
        self.deps.events.record(self.pod, type_, reason, message)

    @property
    def pod_ip(self) -> str:
        if (self.pod.get("spec") or {}).get("hostNetwork"):
            return self.deps.host_ip
        return self.sandbox.ip if self.sandbox else ""

    async def pull_secrets(self) -> list[Obj]:
        out = []
        ns = self.pod["metadata"].get("namespace", "default")
        for ref in (self.pod.get("spec") or {}).get("imagePullSecrets") or []:
            with contextlib.suppress(errors.NotFound):
                out.append(await self.deps.client.get(SECRET, ref.get("name", ""), ns))
        return out

    # --- the loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                timeout = None if self._due is None else max(0.0, self._due - time.time())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                self._wake.clear()
                self._due = None
                try:
                    self.syncs += 1
                    if await self.sync():
                        return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("pod sync failed pod=%s", podstart.pod_ref(self.pod))
                    self.wake_at(time.time() + RETRY_AFTER_ERROR)
        finally:
            self.probes.stop()
            if self.gone or self.pod["metadata"].get("deletionTimestamp"):
                self.on_done(self.uid)

    async def sync(self) -> bool:
        """One step towards the spec; True once the pod is finished with on this node."""
        if self.gone or self.pod["metadata"].get("deletionTimestamp"):
            await self.terminate()
            return True
        terminal = (self.pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        if not await self._ensure_sandbox(create=not terminal):
            if not terminal:
                await self._write_status({})
            return False
        instances = await self._instances()
        view_extra: dict[str, Any] = {}
        if not terminal and self._past_deadline():
            self.event("Normal", "DeadlineExceeded", DEADLINE_MESSAGE)
            view_extra["failed"] = ("DeadlineExceeded", DEADLINE_MESSAGE)
            await self._finish(instances)
        elif not terminal:
            await self._kill_unhealthy(instances)
            instances = await self._instances()
            view_extra = await self._drive(instances)
            instances = await self._instances()
            view = self._view(instances, **view_extra)
            if podstatus.compute(self.pod, view)["phase"] in ("Succeeded", "Failed"):
                await self._finish(instances)
        await self._write_status(view_extra)
        return False

    def _past_deadline(self) -> bool:
        """``activeDeadlineSeconds`` counted from the pod's start; arms a timer if not yet."""
        deadline = (self.pod.get("spec") or {}).get("activeDeadlineSeconds")
        if deadline is None:
            return False
        start = (self.pod.get("status") or {}).get("startTime")
        due = (meta.parse_time(start) if start else self.first_seen) + float(deadline)
        if time.time() >= due:
            return True
        self.wake_at(due)
        return False

    # --- sandbox and instances ---------------------------------------------------------

    async def _ensure_sandbox(self, create: bool) -> bool:
        rt = self.deps.runtime
        if self.sandbox is None:
            mine = [s for s in await rt.list_sandboxes() if s.config.uid == self.uid]
            mine.sort(key=lambda s: (s.state == "ready", s.created_at))
            self.sandbox = mine[-1] if mine else None
        if self.volume_paths is None:
            try:
                self.volume_paths = await self.deps.volumes.setup(self.pod)
            except Exception as e:
                self.event("Warning", "FailedMount", f"MountVolume.SetUp failed: {e}")
                self.wake_at(time.time() + self.deps.config_retry)
                return False
        if self.sandbox is not None and (self.sandbox.state == "ready" or not create):
            return True
        if not create:
            return False
        attempt = 0
        if self.sandbox is not None:  # not ready (the node rebooted): start over
            attempt = self.sandbox.config.attempt + 1
            with contextlib.suppress(NotFound):
                await rt.remove_sandbox(self.sandbox.id)
            self.sandbox = None
        config = podconfig.sandbox_config(
            self.pod, self.deps.cluster_dns, self.deps.cluster_domain, attempt
        )
        try:
            self.sandbox = await rt.create_sandbox(config)
        except RuntimeFailure as e:
            self.event("Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}")
            self.wake_at(time.time() + self.deps.config_retry)
            return False
        return True

    async def _instances(self) -> dict[str, list[ContainerStatus]]:
        """Container name → instances, oldest first; removes all but the last two."""
        if self.sandbox is None:
            return {}
        by_name: dict[str, list[ContainerStatus]] = {}
        for c in await self.deps.runtime.list_containers(self.sandbox.id):
            by_name.setdefault(c.name, []).append(c)
        for name, items in by_name.items():
            items.sort(key=lambda c: (c.attempt, c.created_at))
            for old in items[:-2]:
                if old.state in ("exited", "unknown"):
                    with contextlib.suppress(NotFound):
                        await self.deps.runtime.remove_container(old.id)
            by_name[name] = items[-2:]
        running = {items[-1].id for items in by_name.values() if items[-1].state == "running"}
        self.probes.retain(running)
        specs = self._specs()
        for name, items in by_name.items():
            latest = items[-1]
            if name not in self.image_ids and latest.image:  # adopted: look the id up
                with contextlib.suppress(ImagePullError):
                    self.image_ids[name] = (await self.deps.images.resolve(latest.image)).image_id
            if latest.id in running and not self.probes.has(latest.id) and name in specs:
                started = latest.started_at or latest.created_at
                self.probes.add(
                    ProbeTarget(
                        latest.id,
                        specs[name],
                        started,
                        self.pod_ip,
                        adopted=started < self.deps.started_at,
                    )
                )
        return by_name

    def _specs(self) -> dict[str, Obj]:
        spec = self.pod.get("spec") or {}
        return {
            c["name"]: c for c in [*(spec.get("initContainers") or []), *spec.get("containers", [])]
        }

    async def _kill_unhealthy(self, instances: dict[str, list[ContainerStatus]]) -> None:
        """Kill instances whose liveness/startup probe failed or whose image changed."""
        specs = self._specs()
        grace = float((self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        for name, items in instances.items():
            latest = items[-1]
            if latest.state != "running" or name not in specs:
                continue
            failure = self.probes.failed(latest.id)
            if failure is not None:
                message = f"Container {name} failed {failure[0]} probe, will be restarted"
            elif specs[name].get("image") and latest.image != specs[name]["image"]:
                message = f"Container {name} definition changed, will be restarted"
            else:
                continue
            await lifecycle.stop_container(
                self.deps.runtime,
                lifecycle.Running(latest.id, specs[name]),
                self.pod_ip,
                grace,
                self.event,
                message,
            )
            self.probes.remove(latest.id)

    # --- driving containers ------------------------------------------------------------

    async def _start(self, container: Obj, previous: ContainerStatus | None) -> bool:
        result = await podstart.start(self, container, previous)
        if result.retry_at is not None:
            self.wake_at(result.retry_at)
        return result.started

    async def _drive(self, instances: dict[str, list[ContainerStatus]]) -> dict[str, Any]:
        """Start what should run now; returns facts the status needs (init failure)."""
        spec = self.pod.get("spec") or {}
        policy = spec.get("restartPolicy") or "Always"
        app_started = any(instances.get(c["name"]) for c in spec.get("containers") or [])
        for c in spec.get("initContainers") or []:
            latest = instances.get(c["name"], [None])[-1]
            if c.get("restartPolicy") == "Always":
                if latest is not None and latest.state == "running":
                    if not self.probes.started(latest.id) and not app_started:
                        return {}
                    continue
                if not await self._start(c, latest):
                    if not app_started:
                        return {}
                    continue
                if c.get("startupProbe") and not app_started:
                    return {}
                continue
            if latest is not None and latest.state == "exited" and latest.exit_code == 0:
                continue
            if app_started:
                continue  # initialised before (e.g. agent restart): init never reruns
            if latest is not None and latest.state == "running":
                return {}
            if latest is not None and latest.state == "created":
                with contextlib.suppress(RuntimeFailure):
                    await self.deps.runtime.start_container(latest.id)
                return {}
            if latest is not None and policy == "Never":
                return {"init_failed": True}
            await self._start(c, latest)
            return {}
        for c in spec.get("containers") or []:
            latest = instances.get(c["name"], [None])[-1]
            if latest is None:
                await self._start(c, None)
            elif latest.state == "created":
                with contextlib.suppress(RuntimeFailure):
                    await self.deps.runtime.start_container(latest.id)
            elif latest.state in ("exited", "unknown"):
                failed = latest.exit_code != 0 or latest.state == "unknown"
                if policy == "Always" or (policy == "OnFailure" and failed):
                    await self._start(c, latest)
        return {}

    def _view(self, instances: dict[str, list[ContainerStatus]], **extra: Any) -> podstatus.PodView:
        spec = self.pod.get("spec") or {}

        def view(c: Obj) -> podstatus.ContainerView:
            items = instances.get(c["name"]) or []
            for item in items:
                if item.state == "exited" and not item.message:
                    item.message = termination.read(self.deps.root_dir, self.uid, c, item)
            latest = items[-1] if items else None
            previous = items[-2] if len(items) > 1 else None
            waiting = self.waiting.get(c["name"])
            if latest is not None and latest.state == "running":
                waiting = None
            return podstatus.ContainerView(
                name=c["name"],
                image=c.get("image", ""),
                latest=latest,
                previous=previous,
                restart_count=latest.attempt if latest else 0,
                waiting=waiting,
                ready=latest is not None and self.probes.ready(latest.id),
                started=latest is not None and self.probes.started(latest.id),
                image_id=self.image_ids.get(c["name"], ""),
                sidecar=c.get("restartPolicy") == "Always",
            )

        return podstatus.PodView(
            sandbox_ready=self.sandbox is not None and self.sandbox.state == "ready",
            pod_ip=self.pod_ip,
            host_ip=self.deps.host_ip,
            start_time=self.first_seen,
            init=[view(c) for c in spec.get("initContainers") or []],
            containers=[view(c) for c in spec.get("containers") or []],
            **extra,
        )

    async def _write_status(self, extra: dict[str, Any]) -> None:
        view = self._view(await self._instances(), **extra)
        status = podstatus.compute(self.pod, view)
        written = await self.deps.status.update(self.pod, status)
        if written is not None:
            self.pod = written

    # --- ending ------------------------------------------------------------------------

    def _running(self, instances: dict[str, list[ContainerStatus]]) -> list[lifecycle.Running]:
        specs = self._specs()
        sidecars = {
            c["name"]
            for c in (self.pod.get("spec") or {}).get("initContainers") or []
            if c.get("restartPolicy") == "Always"
        }
        order = list(specs)
        out = [
            lifecycle.Running(items[-1].id, specs.get(name, {"name": name}), name in sidecars)
            for name, items in instances.items()
            if items[-1].state in ("running", "created")
        ]
        out.sort(
            key=lambda r: order.index(r.container["name"]) if r.container["name"] in order else 0
        )
        return out

    async def _finish(self, instances: dict[str, list[ContainerStatus]]) -> None:
        """The pod reached Succeeded/Failed: stop what still runs, release the IP."""
        grace = float((self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        await lifecycle.stop_pod(
            self.deps.runtime, self._running(instances), self.pod_ip, grace, self.event
        )
        self.probes.stop()
        if self.sandbox is not None:
            with contextlib.suppress(NotFound):
                await self.deps.runtime.stop_sandbox(self.sandbox.id)

    async def terminate(self) -> None:
        """Stop the pod for deletion; confirm the deletion to the API server."""
        md = self.pod["metadata"]
        grace = float(md.get("deletionGracePeriodSeconds") or 0)
        if self.sandbox is None:
            mine = [s for s in await self.deps.runtime.list_sandboxes() if s.config.uid == self.uid]
            self.sandbox = mine[-1] if mine else None
        instances = await self._instances()
        self.probes.stop()
        log_dirs = {
            os.path.dirname(os.path.dirname(c.log_path))
            for items in instances.values()
            for c in items
            if c.log_path
        }
        running = self._running(instances)
        if running:
            await lifecycle.stop_pod(self.deps.runtime, running, self.pod_ip, grace, self.event)
        if not self.gone and self.sandbox is not None:
            instances = await self._instances()
            await self._write_status({"stopped_for_deletion": True})
        if self.sandbox is not None:
            with contextlib.suppress(NotFound):
                await self.deps.runtime.stop_sandbox(self.sandbox.id)
                await self.deps.runtime.remove_sandbox(self.sandbox.id)
        for s in await self.deps.runtime.list_sandboxes():  # older attempts, if any
            if s.config.uid == self.uid:
                with contextlib.suppress(NotFound):
                    await self.deps.runtime.remove_sandbox(s.id)
        self.sandbox = None
        termination.remove_pod(self.deps.root_dir, self.uid)
        for directory in log_dirs:  # /var/log/pods/NS_NAME_UID, as upstream removes it
            if directory.endswith(self.uid):
                shutil.rmtree(directory, ignore_errors=True)
        try:
            await self.deps.volumes.teardown(self.pod)
        except Exception:
            log.exception("volume teardown failed pod=%s", podstart.pod_ref(self.pod))
        self.deps.backoff.forget_prefix(self.uid)
        self.deps.image_backoff.forget_prefix(self.uid)
        self.deps.status.forget(self.uid)
        if not self.gone:
            with contextlib.suppress(errors.NotFound, errors.Conflict):
                await self.deps.client.delete(
                    POD,
                    md["name"],
                    md.get("namespace", ""),
                    grace_period_seconds=0,
                    preconditions={"uid": self.uid},
                )
        log.info("pod terminated pod=%s", podstart.pod_ref(self.pod))

"""Pod status as the kubelet reports it, and the status manager that writes it.

`compute` renders ``status`` from what the pod worker observed (a `PodView`) the way
upstream's ``generateAPIPodStatus`` does:

- container states: running(startedAt); terminated(exitCode, reason
  Completed/Error/OOMKilled, startedAt, finishedAt, containerID); waiting(reason,
  message) where the worker has a reason (CrashLoopBackOff, ErrImagePull,
  ImagePullBackOff, CreateContainerConfigError, ...), else ContainerCreating, or
  PodInitializing for containers whose turn has not come. ``lastState`` is the
  instance before the latest; ``containerID`` is ``nanokube://<id>``.
- phase by upstream's ``getPhase``: Pending while initialisation is pending or any
  app container waits without a previous run; Running while any runs (or all
  restart); with all stopped, Succeeded when all succeeded, Failed for
  ``restartPolicy: Never`` (or a failed init container), Running otherwise; a pod
  whose containers were all stopped for deletion ends Succeeded or Failed. A terminal
  phase never changes back.
- conditions PodReadyToStartContainers (sandbox ready), Initialized, ContainersReady,
  Ready (ContainersReady plus ``readinessGates``) and PodScheduled; a condition keeps
  its ``lastTransitionTime`` while its status stays.

`StatusManager` writes through the ``status`` subresource with a strategic merge patch
(conditions merge by type, so conditions other components own survive), and only
when the status differs from what it last wrote or saw, so an idle pod costs no
writes, also after an agent restart.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from nanokube.api import errors
from nanokube.api.resources.core import POD
from nanokube.api.resources.pod import pod_qos_class
from nanokube.client.interface import STRATEGIC_PATCH, Client
from nanokube.runtime.contract import ContainerStatus

log = logging.getLogger(__name__)

Obj = dict[str, Any]
ID_PREFIX = "nanokube://"
KUBELET_CONDITIONS = (
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
)


def fmt_time(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass
class ContainerView:
    """What the worker knows about one container of the spec."""

    name: str
    image: str
    latest: ContainerStatus | None = None
    previous: ContainerStatus | None = None
    restart_count: int = 0
    waiting: tuple[str, str] | None = None
    """(reason, message) the worker sets: CrashLoopBackOff, ErrImagePull, ..."""
    ready: bool = False
    started: bool = False
    image_id: str = ""
    sidecar: bool = False

    @property
    def running(self) -> bool:
        return self.latest is not None and self.latest.state == "running"

    @property
    def succeeded(self) -> bool:
        return (
            self.latest is not None and self.latest.state == "exited" and self.latest.exit_code == 0
        )


@dataclass
class PodView:
    sandbox_ready: bool = False
    pod_ip: str = ""
    host_ip: str = ""
    start_time: float | None = None
    init: list[ContainerView] = field(default_factory=list)
    containers: list[ContainerView] = field(default_factory=list)
    init_failed: bool = False
    """An init container failed and ``restartPolicy: Never`` forbids a retry."""
    stopped_for_deletion: bool = False
    """Every container was stopped because the pod is being deleted."""
    failed: tuple[str, str] | None = None
    """(reason, message) of a pod the kubelet failed as a whole (DeadlineExceeded)."""


def _terminated(s: ContainerStatus) -> Obj:
    if s.state == "unknown":
        return {
            "exitCode": 137,
            "reason": "ContainerStatusUnknown",
            "message": "The container could not be located when the pod was terminated",
        }
    out: Obj = {
        "exitCode": s.exit_code if s.exit_code is not None else 0,
        "reason": s.reason or ("Completed" if s.exit_code == 0 else "Error"),
        "startedAt": fmt_time(s.started_at or s.created_at),
        "finishedAt": fmt_time(s.finished_at),
        "containerID": ID_PREFIX + s.id,
    }
    if s.message:
        out["message"] = s.message
    return out


def container_status(c: ContainerView, default_waiting: str) -> Obj:
    latest = c.latest
    last: Obj = {}
    if c.waiting is not None:
        reason, message = c.waiting
        state: Obj = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        if latest is not None and latest.state in ("exited", "unknown"):
            last = {"terminated": _terminated(latest)}
        elif c.previous is not None:
            last = {"terminated": _terminated(c.previous)}
    elif latest is None or latest.state == "created":
        state = {"waiting": {"reason": default_waiting}}
        if c.previous is not None:
            last = {"terminated": _terminated(c.previous)}
    elif latest.state == "running":
        state = {"running": {"startedAt": fmt_time(latest.started_at)}}
        if c.previous is not None:
            last = {"terminated": _terminated(c.previous)}
    else:
        state = {"terminated": _terminated(latest)}
        if c.previous is not None:
            last = {"terminated": _terminated(c.previous)}
    out: Obj = {
        "name": c.name,
        "state": state,
        "lastState": last,
        "ready": c.ready and c.running,
        "restartCount": c.restart_count,
        "image": c.image,
        "imageID": c.image_id,
        "started": c.started and c.running,
    }
    if latest is not None:
        out["containerID"] = ID_PREFIX + latest.id
    return out


def _stopped(c: ContainerView) -> bool:
    """Upstream counts a waiting container with a previous termination as stopped."""
    if c.latest is None:
        return False
    if c.latest.state in ("exited", "unknown"):
        return True
    return c.latest.state == "created" and c.previous is not None


def phase(spec: Obj, view: PodView) -> str:
    """Upstream's ``getPhase``."""
    policy = spec.get("restartPolicy") or "Always"
    if view.init_failed or view.failed:
        return "Failed"
    pending_init = any(not (c.started if c.sidecar else c.succeeded) for c in view.init)
    if pending_init and not any(c.latest for c in view.containers):
        return "Pending"  # once app containers ran, a restarting sidecar does not count
    waiting = running = stopped = succeeded = 0
    for c in view.containers:
        if c.running:
            running += 1
        elif _stopped(c):
            stopped += 1
            succeeded += c.succeeded
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if view.stopped_for_deletion:
            return "Succeeded" if stopped == succeeded else "Failed"
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"
    return "Pending"


def _conditions(pod: Obj, view: PodView, pod_phase: str, now: float) -> list[Obj]:
    status = pod.get("status") or {}
    before = {c.get("type"): c for c in status.get("conditions") or ()}
    spec = pod.get("spec") or {}
    succeeded = pod_phase == "Succeeded"
    incomplete = [c.name for c in view.init if not (c.started if c.sidecar else c.succeeded)]
    if succeeded and view.init:
        initialized: tuple[str, str, str] = ("True", "PodCompleted", "")
    elif incomplete:
        message = f"containers with incomplete status: [{' '.join(incomplete)}]"
        initialized = ("False", "ContainersNotInitialized", message)
    else:
        initialized = ("True", "", "")
    unready = [c.name for c in view.init if c.sidecar and not (c.ready and c.running)]
    unready += [c.name for c in view.containers if not (c.ready and c.running)]
    if succeeded:
        containers_ready: tuple[str, str, str] = ("False", "PodCompleted", "")
    elif unready:
        message = f"containers with unready status: [{' '.join(unready)}]"
        containers_ready = ("False", "ContainersNotReady", message)
    else:
        containers_ready = ("True", "", "")
    ready = containers_ready
    if ready[0] == "True":
        missing = []
        for gate in spec.get("readinessGates") or []:
            cond = before.get(gate.get("conditionType"))
            if cond is None or cond.get("status") != "True":
                missing.append(gate.get("conditionType"))
        if missing:
            ready = (
                "False",
                "ReadinessGatesNotReady",
                f'corresponding condition of pod readiness gate "{missing[0]}" does not exist.',
            )
    wanted = [
        ("PodReadyToStartContainers", "True" if view.sandbox_ready else "False", "", ""),
        ("Initialized", *initialized),
        ("Ready", *ready),
        ("ContainersReady", *containers_ready),
        ("PodScheduled", "True", "", ""),
    ]
    out = []
    for type_, cond_status, reason, message in wanted:
        old = before.get(type_) or {}
        new: Obj = {"type": type_, "status": cond_status, "lastProbeTime": None}
        same = old.get("status") == cond_status
        new["lastTransitionTime"] = (old.get("lastTransitionTime") if same else None) or (
            fmt_time(now)
        )
        if reason:
            new["reason"] = reason
        if message:
            new["message"] = message
        out.append(new)
    return out


def compute(pod: Obj, view: PodView, now: float | None = None) -> Obj:
    """The status fields the kubelet owns, for `pod` as `view` observed it."""
    now = time.time() if now is None else now
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    pod_phase = phase(spec, view)
    if old.get("phase") in ("Succeeded", "Failed"):
        pod_phase = old["phase"]  # terminal phases are final
    init_pending = any(not (c.started if c.sidecar else c.succeeded) for c in view.init)
    status: Obj = {
        "phase": pod_phase,
        "conditions": _conditions(pod, view, pod_phase, now),
        "hostIP": view.host_ip,
        "hostIPs": [{"ip": view.host_ip}] if view.host_ip else [],
        "startTime": old.get("startTime") or fmt_time(view.start_time or now),
        "qosClass": old.get("qosClass") or pod_qos_class(spec),
        "containerStatuses": [
            container_status(c, "PodInitializing" if init_pending else "ContainerCreating")
            for c in view.containers
        ],
    }
    if view.failed:
        status["reason"], status["message"] = view.failed
    pod_ip = view.pod_ip or old.get("podIP") or ""
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if view.init:
        status["initContainerStatuses"] = [
            container_status(c, "PodInitializing") for c in view.init
        ]
    return status


def _comparable(status: Obj) -> Obj:
    """A status without what changes on every computation of an unchanged state."""
    out = copy.deepcopy(status)
    for cond in out.get("conditions") or ():
        if cond is not None:
            cond.pop("lastProbeTime", None)
    return out


def differs(old: Obj, new: Obj) -> bool:
    """Whether writing `new` over `old` changes any field the kubelet owns."""
    old_view = {k: old.get(k) for k in new}
    old_conds = {c.get("type"): c for c in old.get("conditions") or ()}
    old_view["conditions"] = [old_conds.get(c["type"]) for c in new.get("conditions") or ()]
    return _comparable(old_view) != _comparable(new)


class StatusManager:
    """Writes pod statuses through ``pods/status``, skipping writes that change nothing."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._written: dict[str, Obj] = {}  # pod uid -> the status last written
        self.writes = 0

    def last(self, uid: str) -> Obj | None:
        return self._written.get(uid)

    async def update(self, pod: Obj, status: Obj) -> Obj | None:
        """Write `status` if it changes anything; the pod as written (None if skipped or
        the pod is gone)."""
        md = pod["metadata"]
        base = self._written.get(md["uid"]) or pod.get("status") or {}
        if not differs(base, status):
            return None
        patch = {"metadata": {"uid": md["uid"]}, "status": status}
        try:
            written: Obj = await self.client.patch(
                POD,
                md["name"],
                patch,
                md.get("namespace", ""),
                patch_type=STRATEGIC_PATCH,
                subresource="status",
            )
        except errors.NotFound:
            return None
        if (written.get("metadata") or {}).get("uid") != md["uid"]:
            return None  # a new pod of the same name: not ours to describe
        self._written[md["uid"]] = status
        self.writes += 1
        log.debug(
            "pod status written pod=%s/%s phase=%s",
            md.get("namespace"),
            md["name"],
            status.get("phase"),
        )
        return written

    def forget(self, uid: str) -> None:
        self._written.pop(uid, None)

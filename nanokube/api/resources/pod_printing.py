"""How a pod prints in `kubectl get pods`: upstream's `printPod`, cell for cell.

The STATUS cell is the part users read most, so it follows upstream's rules in
their order: the phase (or `status.reason`), `SchedulingGated`, the first init
container not done (`Init:0/1`, `Init:CrashLoopBackOff`, `Init:Error`), then the
app containers from last to first (a waiting or terminated reason wins:
`ContainerCreating`, `CrashLoopBackOff`, `Completed`, `Error`, `OOMKilled`),
`NotReady`/`Running` for a partly completed pod, and finally `Terminating` or
`Unknown` for a pod being deleted. RESTARTS reads `3 (2m ago)` when a container
restarted. Sidecars (init containers with `restartPolicy: Always`) count as
containers of the pod.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from nanokube.api.kinds import Column
from nanokube.api.meta import age, human_duration, parse_time

Obj = dict[str, Any]

POD_COLUMNS = (
    Column("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
    Column("Status", description="The aggregate status of the containers in this pod."),
    Column(
        "Restarts",
        description="The number of times the containers in this pod have been restarted "
        "and when the last container in this pod has restarted.",
    ),
    Column(
        "Age",
        description="CreationTimestamp is a timestamp representing the server time "
        "when this object was created.",
    ),
    Column("IP", priority=1, description="podIP address allocated to the pod."),
    Column(
        "Node", priority=1, description="NodeName indicates in which node this pod is scheduled."
    ),
    Column(
        "Nominated Node",
        priority=1,
        description="nominatedNodeName is set only when this pod preempts other pods on the node.",
    ),
    Column(
        "Readiness Gates",
        priority=1,
        description="If specified, all readiness gates will be evaluated for pod readiness.",
    ),
)


def _is_sidecar(container: Obj | None) -> bool:
    return bool(container) and (container or {}).get("restartPolicy") == "Always"


def _finished_at(status: Obj) -> float:
    """When the container's previous run ended (0 when it never did)."""
    when = ((status.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
    return parse_time(when) if when else 0.0


def _condition_true(pod_status: Obj, kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True"
        for c in pod_status.get("conditions") or []
    )


def _terminated_reason(term: Obj, prefix: str = "") -> str:
    if term.get("reason"):
        return prefix + term["reason"]
    if term.get("signal"):
        return f"{prefix}Signal:{term['signal']}"
    return f"{prefix}ExitCode:{term.get('exitCode', 0)}"


def pod_status_summary(pod: Obj) -> tuple[int, int, str, int, float]:
    """(ready containers, total containers, STATUS, restarts, time of the last restart)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    phase = status.get("phase", "")
    reason = status.get("reason") or phase
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    total = len(spec.get("containers") or []) + sum(
        1 for c in init_specs.values() if _is_sidecar(c)
    )
    ready = restarts = sidecar_restarts = 0
    last_restart = last_sidecar_restart = 0.0

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for i, cs in enumerate(init_statuses):
        restarts += cs.get("restartCount", 0)
        last_restart = max(last_restart, _finished_at(cs))
        sidecar = _is_sidecar(init_specs.get(cs.get("name")))
        if sidecar:
            sidecar_restarts += cs.get("restartCount", 0)
            last_sidecar_restart = max(last_sidecar_restart, _finished_at(cs))
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and terminated.get("exitCode", 0) == 0:
            continue
        if sidecar and cs.get("started"):
            ready += 1 if cs.get("ready") else 0
            continue
        if terminated is not None:
            reason = _terminated_reason(terminated, "Init:")
        elif (
            waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing"
        ):
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(status, "Initialized"):
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            last_restart = max(last_restart, _finished_at(cs))
            state = cs.get("state") or {}
            waiting, terminated = state.get("waiting") or {}, state.get("terminated")
            if waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None:
                reason = _terminated_reason(terminated)
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(status, "Ready") else "NotReady"

    if pod.get("metadata", {}).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    return ready, total, reason, restarts, last_restart


def pod_row(pod: Obj, now: float | None = None) -> list[Any]:
    """The cells after NAME: READY STATUS RESTARTS AGE IP NODE NOMINATED-NODE READINESS-GATES."""
    ready, total, reason, restarts, last_restart = pod_status_summary(pod)
    restarts_cell = str(restarts)
    if restarts and last_restart:
        elapsed = age_since(last_restart, now)
        restarts_cell = f"{restarts} ({elapsed} ago)"
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ips = status.get("podIPs") or []
    pod_ip = (ips[0].get("ip") if ips else "") or status.get("podIP") or "<none>"
    gates = spec.get("readinessGates") or []
    gates_cell = "<none>"
    if gates:
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        true = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
        gates_cell = f"{true}/{len(gates)}"
    return [
        f"{ready}/{total}",
        reason,
        restarts_cell,
        age(pod.get("metadata", {}).get("creationTimestamp"), now),
        pod_ip,
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_cell,
    ]


def age_since(epoch_seconds: float, now: float | None = None) -> str:
    """`translateTimestampSince` for a time already parsed to epoch seconds."""
    return human_duration(int((now if now is not None else time.time()) - epoch_seconds))


POD_FIELD_SELECTORS: dict[str, Callable[[Obj], str]] = {
    "spec.nodeName": lambda p: (p.get("spec") or {}).get("nodeName") or "",
    "spec.restartPolicy": lambda p: (p.get("spec") or {}).get("restartPolicy") or "",
    "spec.schedulerName": lambda p: (p.get("spec") or {}).get("schedulerName") or "",
    "spec.serviceAccountName": lambda p: (p.get("spec") or {}).get("serviceAccountName") or "",
    "spec.hostNetwork": lambda p: "true" if (p.get("spec") or {}).get("hostNetwork") else "false",
    "status.phase": lambda p: (p.get("status") or {}).get("phase") or "",
    "status.podIP": lambda p: (
        (((p.get("status") or {}).get("podIPs") or [{}])[0]).get("ip")
        or (p.get("status") or {}).get("podIP")
        or ""
    ),
    "status.nominatedNodeName": lambda p: (p.get("status") or {}).get("nominatedNodeName") or "",
}

"""The simulated runtime: pods run as timelines in memory, no processes.

Each pod on a simulated node gets a `PodRun`: its IP and, per container, a
small state machine (waiting ContainerCreating → running → terminated →
waiting CrashLoopBackOff → running ...). `advance(run, now)` moves every
container to where it is at `now` and returns when the next change is due,
so the simulator re-examines a pod only when something happens (one timer on
its work queue), never by polling. `pod_status(pod, run, ...)` renders the
status the kubelet would write (`generateAPIPodStatus`): phase by upstream's
`getPhase` rules, the five pod conditions, container statuses.

What a pod does is declared on it:

- `sim.nanokube.io/start-seconds: "2"`: time in ContainerCreating (default:
  the simulator's start delay, 0);
- `sim.nanokube.io/exit-code: "1"`: every container exits with this code ...
- `sim.nanokube.io/run-seconds: "3"`: ... after running this long (default 0
  when an exit code is given; alone, it means exit 0 after that time);
- a container whose command is `sh -c "exit N"` (command, or command + args,
  `sh` or `/bin/sh`) exits N after the run time, whatever the annotations say;
- `sim.nanokube.io/cpu-usage: "250m"`, `sim.nanokube.io/memory-usage: "64Mi"`:
  what `usage(pod)` reports while the pod runs (for metrics.k8s.io).

Containers without an exit run until the pod is deleted. `restartPolicy`
decides what follows an exit: Never leaves it terminated (the pod ends
Succeeded or Failed), OnFailure restarts non-zero exits, Always restarts all;
restart k waits `backoff_base * 2**(k-1)` seconds capped at `backoff_max`
(upstream's CrashLoopBackOff: 10 s doubling to 5 min). Init containers
complete at once with exit 0 (sidecars, init containers with `restartPolicy:
Always`, keep running); readiness is "running", as for containers without probes.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Any

from nanokube.api.validators import parse_quantity

Obj = dict[str, Any]

PREFIX = "sim.nanokube.io/"
START_SECONDS = PREFIX + "start-seconds"
EXIT_CODE = PREFIX + "exit-code"
RUN_SECONDS = PREFIX + "run-seconds"
CPU_USAGE = PREFIX + "cpu-usage"
MEMORY_USAGE = PREFIX + "memory-usage"

# What a running pod uses when its annotations do not say.
DEFAULT_CPU_USAGE = "1m"
DEFAULT_MEMORY_USAGE = "8Mi"

_EXIT = re.compile(r"^\s*exit\s+(\d+)\s*$")
_SHELLS = ("sh", "/bin/sh", "bash", "/bin/bash")


def _fmt(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _float(value: Any, default: float) -> float:
    try:
        return max(float(value), 0.0)
    except (TypeError, ValueError):
        return default


def command_exit_code(container: Obj) -> int | None:
    """N for a container whose command line is `sh -c "exit N"`, else None."""
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    if len(argv) == 3 and argv[0] in _SHELLS and argv[1] == "-c":
        m = _EXIT.match(str(argv[2]))
        if m:
            return int(m.group(1)) % 256
    return None


@dataclass
class ContainerRun:
    """One container's timeline; times are seconds since the epoch."""

    name: str
    image: str
    exit_code: int | None  # None: runs until the pod is stopped
    run_seconds: float
    init: bool = False
    sidecar: bool = False
    state: str = "waiting"  # waiting, running or terminated
    reason: str = "ContainerCreating"  # of the waiting state
    next_start: float = 0.0  # when a waiting container starts
    started_at: float = 0.0
    finished_at: float = 0.0
    last_exit: int = 0  # exit code of the last termination
    restart_count: int = 0
    last_termination: Obj | None = None  # lastState.terminated
    container_id: str = ""


@dataclass
class PodRun:
    """A pod on the simulated runtime: its address and its containers' timelines."""

    uid: str
    ref: str  # NAME_NAMESPACE, as upstream's back-off message names the pod
    ip: str
    restart_policy: str
    created_at: float
    init: list[ContainerRun] = field(default_factory=list)
    containers: list[ContainerRun] = field(default_factory=list)
    terminal: bool = False  # Succeeded or Failed: nothing will run again
    node: str = ""  # the node whose podCIDR the IP came from
    ip_released: bool = False  # the IP went back to the node (the pod ended or left)


def new_run(pod: Obj, ip: str, now: float, start_delay: float) -> PodRun:
    md = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    ann = md.get("annotations") or {}
    start = now + _float(ann.get(START_SECONDS), start_delay)
    code = ann.get(EXIT_CODE)
    pod_exit: int | None = None
    if code is not None:
        try:
            pod_exit = int(code) % 256
        except ValueError:
            pod_exit = 1
    if pod_exit is None and ann.get(RUN_SECONDS) is not None:
        pod_exit = 0
    run_seconds = _float(ann.get(RUN_SECONDS), 0.0)

    def container(c: Obj, init: bool) -> ContainerRun:
        sidecar = init and c.get("restartPolicy") == "Always"
        exit_code = 0 if init and not sidecar else command_exit_code(c)
        if exit_code is None:
            exit_code = pod_exit
        return ContainerRun(
            c.get("name", ""),
            c.get("image", ""),
            exit_code,
            0.0 if init and not sidecar else run_seconds,
            init=init,
            sidecar=sidecar,
            next_start=start,
        )

    return PodRun(
        uid=md.get("uid", ""),
        ref=f"{md.get('name', '')}_{md.get('namespace', '')}",
        ip=ip,
        restart_policy=spec.get("restartPolicy") or "Always",
        created_at=now,
        init=[container(c, True) for c in spec.get("initContainers") or ()],
        containers=[container(c, False) for c in spec.get("containers") or ()],
    )


def _backoff(restarts: int, base: float, cap: float) -> float:
    return float(min(base * (2 ** max(restarts, 0)), cap))


def _container_id(run: PodRun, c: ContainerRun) -> str:
    digest = hashlib.sha256(f"{run.uid}/{c.name}/{c.restart_count}".encode()).hexdigest()
    return f"simulated://{digest[:32]}"


def _step(run: PodRun, c: ContainerRun, now: float, base: float, cap: float) -> float | None:
    """Advance one container to `now`; the time of its next change, or None."""
    while True:
        if c.state == "waiting":
            if run.terminal or c.next_start > now:
                return None if run.terminal else c.next_start
            c.state, c.started_at = "running", c.next_start
            c.container_id = _container_id(run, c)
        elif c.state == "running":
            if c.exit_code is None:
                return None
            end = c.started_at + c.run_seconds
            if end > now:
                return end
            c.state, c.finished_at, c.last_exit = "terminated", end, c.exit_code
        else:
            if c.init:  # init containers run to completion once; sidecars restart always
                restart = c.sidecar
            else:
                restart = run.restart_policy == "Always" or (
                    run.restart_policy == "OnFailure" and c.last_exit != 0
                )
            if not restart or run.terminal:
                return None
            c.last_termination = _terminated(c)
            c.next_start = c.finished_at + _backoff(c.restart_count, base, cap)
            c.restart_count += 1
            c.state, c.reason = "waiting", "CrashLoopBackOff"


def advance(run: PodRun, now: float, backoff_base: float, backoff_max: float) -> float | None:
    """Move every container to `now`; when the next change is due (None: never)."""
    due: list[float] = []
    for c in [*run.init, *run.containers]:
        t = _step(run, c, now, backoff_base, backoff_max)
        if t is not None:
            due.append(t)
    if _phase(run) in ("Succeeded", "Failed"):
        run.terminal = True
        return None
    return min(due) if due else None


def _terminated(c: ContainerRun) -> Obj:
    return {
        "exitCode": c.last_exit,
        "reason": "Completed" if c.last_exit == 0 else "Error",
        "startedAt": _fmt(c.started_at),
        "finishedAt": _fmt(c.finished_at),
        "containerID": c.container_id,
    }


def _phase(run: PodRun) -> str:
    """Upstream's `getPhase` over the app containers."""
    waiting = running = stopped = succeeded = 0
    for c in run.containers:
        if c.state == "running":
            running += 1
        elif c.state == "terminated":
            stopped += 1
            succeeded += c.last_exit == 0
        elif c.last_termination is not None:
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if run.restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if run.restart_policy == "Never" else "Running"
    return "Pending"


def _container_status(run: PodRun, c: ContainerRun) -> Obj:
    if c.state == "running":
        state: Obj = {"running": {"startedAt": _fmt(c.started_at)}}
    elif c.state == "terminated":
        state = {"terminated": _terminated(c)}
    elif c.reason == "CrashLoopBackOff":
        message = (
            f"back-off {int(max(c.next_start - c.finished_at, 0))}s restarting failed "
            f"container={c.name} pod={run.ref}({run.uid})"
        )
        state = {"waiting": {"reason": c.reason, "message": message}}
    else:
        state = {"waiting": {"reason": c.reason}}
    status: Obj = {
        "name": c.name,
        "state": state,
        "lastState": {"terminated": c.last_termination} if c.last_termination else {},
        "ready": c.state == "running",
        "restartCount": c.restart_count,
        "image": c.image,
        "imageID": f"simulated://{c.image}",
        "started": c.state == "running",
    }
    if c.container_id:
        status["containerID"] = c.container_id
    return status


def _conditions(pod: Obj, run: PodRun, phase: str) -> list[Obj]:
    """The kubelet's pod conditions; a condition whose status stays keeps its timestamps."""
    before = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or ()}
    terminal = phase in ("Succeeded", "Failed")
    unready = [c.name for c in run.containers if c.state != "running"]
    if terminal:
        ready: tuple[str, str, str] = ("False", "PodCompleted", "")
    elif unready:
        ready = (
            "False",
            "ContainersNotReady",
            f"containers with unready status: [{' '.join(unready)}]",
        )
    else:
        ready = ("True", "", "")
    pending_init = [c.name for c in run.init if not c.sidecar and c.state != "terminated"]
    if terminal and run.init:
        initialized: tuple[str, str, str] = ("True", "PodCompleted", "")
    elif pending_init:
        message = f"containers with incomplete status: [{' '.join(pending_init)}]"
        initialized = ("False", "ContainersNotInitialized", message)
    else:
        initialized = ("True", "", "")
    wanted = [
        ("PodReadyToStartContainers", "False" if terminal else "True", "", ""),
        ("Initialized", *initialized),
        ("Ready", *ready),
        ("ContainersReady", *ready),
    ]
    out = []
    for type_, status, reason, message in wanted:
        old = before.pop(type_, None) or {}
        cond: Obj = {"type": type_, "status": status, "lastProbeTime": None}
        same = old.get("status") == status
        cond["lastTransitionTime"] = old.get("lastTransitionTime") if same else None
        cond["lastTransitionTime"] = cond["lastTransitionTime"] or _fmt(time.time())
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        out.append(cond)
    # PodScheduled (from the binding) and anything else the kubelet does not own.
    out += list(before.values())
    return out


def pod_status(pod: Obj, run: PodRun, host_ip: str) -> Obj:
    """The full status the kubelet writes for `pod` as `run` stands (advance it first)."""
    phase = _phase(run)
    status: Obj = {**(pod.get("status") or {})}
    status.update(
        {
            "phase": phase,
            "conditions": _conditions(pod, run, phase),
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": run.ip,
            "podIPs": [{"ip": run.ip}],
            "startTime": status.get("startTime") or _fmt(run.created_at),
            "containerStatuses": [_container_status(run, c) for c in run.containers],
        }
    )
    if run.init:
        status["initContainerStatuses"] = [_container_status(run, c) for c in run.init]
    return status


def usage(pod: Obj) -> tuple[int, int]:
    """(CPU in nanocores, memory in bytes) a simulated pod uses now; (0, 0) unless Running."""
    if (pod.get("status") or {}).get("phase") != "Running":
        return 0, 0
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    try:
        cpu = parse_quantity(ann.get(CPU_USAGE) or DEFAULT_CPU_USAGE)
        memory = parse_quantity(ann.get(MEMORY_USAGE) or DEFAULT_MEMORY_USAGE)
    except ValueError:
        cpu, memory = parse_quantity(DEFAULT_CPU_USAGE), parse_quantity(DEFAULT_MEMORY_USAGE)
    return int(cpu * 1_000_000_000), int(memory)

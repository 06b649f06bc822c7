"""What the Endpoints and EndpointSlice controllers share: which pods back a Service, how.

Upstream keeps these in `pkg/controller/util/endpoint` and
`staging/src/k8s.io/endpointslice/util`:

- `services_for_pod`: the Services of the pod's namespace whose selector
  matches it (what a pod event re-syncs);
- `should_pod_be_in_endpoints`: a pod is an endpoint once it has an IP and
  while it is not terminal (Succeeded/Failed); a pod being deleted only when
  terminating endpoints are wanted;
- `pod_ips`: the pod's IPs of the family the Service uses;
- `find_port`: a Service port's target port on a pod, a name looked up in the
  containers' ports (and restartable init containers', i.e. sidecars) of the
  same protocol;
- `should_set_hostname`: a pod with `spec.hostname` whose `spec.subdomain`
  names the Service;
- `TriggerTimeTracker`: the value of the
  `endpoints.kubernetes.io/last-change-trigger-time` annotation — the
  Service's creation time on its first sync, later the earliest of the
  changes (pod Ready transitions, the Service's creation) seen since the last
  sync; nothing when no trigger changed.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any

from nanokube.api import meta, selectors
from nanokube.client.informer import Informer

Obj = dict[str, Any]

LAST_CHANGE_TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
HEADLESS_LABEL = "service.kubernetes.io/headless"


def service_selector(svc: Obj) -> selectors.LabelSelector | None:
    """The Service's pod selector; None when it has none (its endpoints are managed by hand)."""
    selector = (svc.get("spec") or {}).get("selector")
    if selector is None:
        return None
    return selectors.label_selector_from_set(selector)


def services_for_pod(services: Informer, pod: Obj) -> list[Obj]:
    found = []
    for svc in services.list(meta.namespace(pod)):
        sel = service_selector(svc)
        if sel is not None and sel.matches_object(pod):
            found.append(svc)
    return found


def is_headless(svc: Obj) -> bool:
    return (svc.get("spec") or {}).get("clusterIP") == "None"


def should_pod_be_in_endpoints(pod: Obj, include_terminating: bool) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    if not status.get("podIP") and not status.get("podIPs"):
        return False
    return include_terminating or not pod["metadata"].get("deletionTimestamp")


def address_family(svc: Obj) -> str:
    """ "IPv4" or "IPv6": the Service's first IP family (by its cluster IP when unset)."""
    spec = svc.get("spec") or {}
    families = spec.get("ipFamilies") or []
    if families:
        return str(families[0])
    ip = spec.get("clusterIP")
    if ip and ip != "None":
        try:
            return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"
        except ValueError:
            pass
    return "IPv4"


def pod_ips(pod: Obj, family: str) -> list[str]:
    """The pod's IPs of `family`, podIPs first (dual-stack), podIP otherwise."""
    status = pod.get("status") or {}
    candidates = [p.get("ip", "") for p in status.get("podIPs") or ()] or [status.get("podIP", "")]
    found = []
    for ip in candidates:
        try:
            version = ipaddress.ip_address(ip).version
        except ValueError:
            continue
        if (version == 6) == (family == "IPv6") and ip not in found:
            found.append(ip)
    return found


def find_port(pod: Obj, service_port: Obj) -> int | None:
    """`podutil.FindPort`: the number a Service port targets on this pod, or None."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    spec = pod.get("spec") or {}
    sidecars = [c for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always"]
    for container in [*(spec.get("containers") or ()), *sidecars]:
        for port in container.get("ports") or ():
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return int(port["containerPort"])
    return None


def should_set_hostname(pod: Obj, svc: Obj) -> bool:
    spec = pod.get("spec") or {}
    return (
        bool(spec.get("hostname"))
        and spec.get("subdomain") == meta.name(svc)
        and meta.namespace(pod) == meta.namespace(svc)
    )


def target_ref(pod: Obj) -> Obj:
    md = pod["metadata"]
    return {
        "kind": "Pod",
        "namespace": md.get("namespace", ""),
        "name": md["name"],
        "uid": md["uid"],
    }


def format_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _ready_transition(pod: Obj) -> float:
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready" and cond.get("lastTransitionTime"):
            try:
                return meta.parse_time(cond["lastTransitionTime"])
            except ValueError:
                return 0.0
    return 0.0


def _created(obj: Obj) -> float:
    stamp = obj["metadata"].get("creationTimestamp")
    return meta.parse_time(stamp) if stamp else 0.0


@dataclass
class _ServiceState:
    pod_times: dict[str, float] = field(default_factory=dict)
    service_time: float = 0.0


class TriggerTimeTracker:
    """Per Service, the trigger times seen at its last sync (see the module docstring)."""

    def __init__(self) -> None:
        self._states: dict[str, _ServiceState] = {}

    def compute(self, svc: Obj, pods: list[Obj]) -> float:
        """The annotation's time for this sync (0: no annotation); remembers what it saw."""
        key = f"{meta.namespace(svc)}/{meta.name(svc)}"
        previous = self._states.get(key)
        state = _ServiceState()
        earliest = 0.0
        for pod in pods:
            when = _ready_transition(pod)
            if not when:
                continue
            state.pod_times[meta.name(pod)] = when
            if previous is not None and when > previous.pod_times.get(meta.name(pod), 0.0):
                earliest = when if not earliest else min(earliest, when)
        state.service_time = _created(svc)
        if previous is not None and state.service_time > previous.service_time:
            earliest = state.service_time if not earliest else min(earliest, state.service_time)
        self._states[key] = state
        if previous is None:
            return state.service_time
        return earliest

    def forget(self, namespace: str, name: str) -> None:
        self._states.pop(f"{namespace}/{name}", None)

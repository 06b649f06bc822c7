"""The HPA's replica calculation for resource metrics (upstream `replica_calculator.go`).

The algorithm, as the Kubernetes docs state it:

    desiredReplicas = ceil[currentReplicas * (currentMetricValue / desiredMetricValue)]

where the current value is the average over the pods that have metrics. The
details that make it stable:

- pods being deleted and Failed pods are ignored; Pending pods, and (for CPU
  only) pods not yet ready or measured too soon after becoming ready, count
  as *unready*; pods without metrics are *missing*;
- with no unready and no missing pods, a ratio within the tolerance (10%) of
  1.0 keeps the current count, and otherwise the new count is
  ceil(ratio × ready pods);
- otherwise the ratio is computed again, more conservatively: on a scale-down
  a missing pod counts as using 100% of its request (of the target, for a raw
  value); on a scale-up, missing and unready pods count as using nothing.
  If that flips the direction or lands within the tolerance, the count stays.

Values are in milli-units (millicores, millibytes) as upstream's
`MilliValue`; integer arithmetic is truncating as in Go. Everything here is
pure: pods and metrics come in, a count goes out; `MetricsError`s carry
upstream's messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nanokube.api import meta
from nanokube.controllers.hpa_metrics import MetricsError, PodMetric, milli_value

Obj = dict[str, Any]


@dataclass(frozen=True)
class PodGroups:
    ready: int
    unready: set[str]
    missing: set[str]
    ignored: set[str]


def _ready_condition(pod: Obj) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return dict(c)
    return None


def _time(value: Any) -> float | None:
    return meta.parse_time(value) if isinstance(value, str) and value else None


@dataclass
class ReplicaCalculator:
    """Upstream's ReplicaCalculator; each setting is one of kube-controller-manager's flags."""

    # --horizontal-pod-autoscaler-tolerance: ratios this close to 1.0 change nothing.
    tolerance: float = 0.1
    # --horizontal-pod-autoscaler-cpu-initialization-period: while a pod is this young,
    # its CPU samples count only once taken a full window after it became ready.
    cpu_initialization_period: float = 300.0
    # --horizontal-pod-autoscaler-initial-readiness-delay: a pod that turned unready this
    # soon after starting has never been ready.
    initial_readiness_delay: float = 30.0

    def group_pods(
        self, pods: list[Obj], metrics: dict[str, PodMetric], resource: str, now: float
    ) -> PodGroups:
        """Sort pods into ready (counted), unready, missing (no metrics) and ignored."""
        ready = 0
        unready: set[str] = set()
        missing: set[str] = set()
        ignored: set[str] = set()
        for pod in pods:
            name = meta.name(pod)
            status = pod.get("status") or {}
            phase = status.get("phase")
            if (pod.get("metadata") or {}).get("deletionTimestamp") or phase == "Failed":
                ignored.add(name)
                continue
            if phase == "Pending":
                unready.add(name)
                continue
            metric = metrics.get(name)
            if metric is None:
                missing.add(name)
                continue
            if resource == "cpu" and self._cpu_unready(pod, metric, now):
                unready.add(name)
                continue
            ready += 1
        return PodGroups(ready, unready, missing, ignored)

    def _cpu_unready(self, pod: Obj, metric: PodMetric, now: float) -> bool:
        condition = _ready_condition(pod)
        started = _time((pod.get("status") or {}).get("startTime"))
        if condition is None or started is None:
            return True
        changed = _time(condition.get("lastTransitionTime")) or 0.0
        if started + self.cpu_initialization_period > now:
            # Young pod: its sample counts once a whole window was measured while ready.
            return condition.get("status") == "False" or metric.timestamp < changed + metric.window
        # An unready pod that has never been ready (it turned unready right at start).
        return (
            condition.get("status") == "False" and started + self.initial_readiness_delay > changed
        )

    def _within_tolerance(self, ratio: float) -> bool:
        return abs(1.0 - ratio) <= self.tolerance

    def _settle(
        self,
        current: int,
        ratio: float,
        new_ratio: float,
        counted: int,
    ) -> int:
        """The count after the conservative second pass (unready or missing pods)."""
        if (
            self._within_tolerance(new_ratio)
            or (ratio < 1.0 < new_ratio)
            or (ratio > 1.0 > new_ratio)
        ):
            return current
        proposed = math.ceil(new_ratio * counted)
        if (new_ratio < 1.0 and proposed > current) or (new_ratio > 1.0 and proposed < current):
            return current
        return proposed

    def resource_replicas(
        self,
        current: int,
        target_utilization: int,
        resource: str,
        pods: list[Obj],
        metrics: dict[str, PodMetric],
        now: float,
        container: str = "",
    ) -> tuple[int, int, int]:
        """(replicas, utilization % of requests, average raw value) for a Utilization target."""
        if not pods:
            raise MetricsError("no pods returned by selector while calculating replica count")
        metrics = dict(metrics)
        groups = self.group_pods(pods, metrics, resource, now)
        for name in groups.ignored | groups.unready:
            metrics.pop(name, None)
        if not metrics:
            raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
        requests = pod_requests(pods, resource, container)
        ratio, utilization, raw = utilization_ratio(metrics, requests, target_utilization)
        scale_up_with_unready = bool(groups.unready) and ratio > 1.0
        if not scale_up_with_unready and not groups.missing:
            if self._within_tolerance(ratio):
                return current, utilization, raw
            return math.ceil(ratio * groups.ready), utilization, raw
        if groups.missing:
            for name in groups.missing:
                # Scale-down: a missing pod uses all it requested; scale-up: nothing.
                metrics[name] = PodMetric(requests.get(name, 0) if ratio < 1.0 else 0, 0.0, 0.0)
        if scale_up_with_unready:
            for name in groups.unready:
                metrics[name] = PodMetric(0, 0.0, 0.0)
        new_ratio, _, _ = utilization_ratio(metrics, requests, target_utilization)
        return self._settle(current, ratio, new_ratio, len(metrics)), utilization, raw

    def raw_resource_replicas(
        self,
        current: int,
        target_value: int,
        resource: str,
        pods: list[Obj],
        metrics: dict[str, PodMetric],
        now: float,
    ) -> tuple[int, int]:
        """(replicas, average raw value) for an AverageValue target (milli-units)."""
        if not pods:
            raise MetricsError("no pods returned by selector while calculating replica count")
        metrics = dict(metrics)
        groups = self.group_pods(pods, metrics, resource, now)
        for name in groups.ignored | groups.unready:
            metrics.pop(name, None)
        if not metrics:
            raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
        ratio, usage = usage_ratio(metrics, target_value)
        scale_up_with_unready = bool(groups.unready) and ratio > 1.0
        if not scale_up_with_unready and not groups.missing:
            if self._within_tolerance(ratio):
                return current, usage
            return math.ceil(ratio * groups.ready), usage
        if groups.missing:
            for name in groups.missing:
                # Scale-down: a missing pod uses exactly the target; scale-up: nothing.
                metrics[name] = PodMetric(target_value if ratio < 1.0 else 0, 0.0, 0.0)
        if scale_up_with_unready:
            for name in groups.unready:
                metrics[name] = PodMetric(0, 0.0, 0.0)
        new_ratio, _ = usage_ratio(metrics, target_value)
        return self._settle(current, ratio, new_ratio, len(metrics)), usage


def pod_requests(pods: list[Obj], resource: str, container: str = "") -> dict[str, int]:
    """Each pod's request of `resource` in milli-units: its containers' and restartable
    init containers' (sidecars'), or one named container's."""
    out: dict[str, int] = {}
    for pod in pods:
        spec = pod.get("spec") or {}
        containers = list(spec.get("containers") or [])
        containers += [
            c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"
        ]
        total = 0
        for c in containers:
            if container and c.get("name") != container:
                continue
            request = ((c.get("resources") or {}).get("requests") or {}).get(resource)
            if request is None:
                raise MetricsError(
                    f"missing request for {resource} in container {c.get('name')} "
                    f"of Pod {meta.name(pod)}"
                )
            total += milli_value(request)
        out[meta.name(pod)] = total
    return out


def utilization_ratio(
    metrics: dict[str, PodMetric], requests: dict[str, int], target_utilization: int
) -> tuple[float, int, int]:
    """(usage ratio to the target, utilization %, average raw value) over pods with requests."""
    total = requested = count = 0
    for name, metric in metrics.items():
        if name not in requests:
            continue
        total += metric.value
        requested += requests[name]
        count += 1
    if requested == 0:
        raise MetricsError("no metrics returned matched known pods")
    utilization = total * 100 // requested
    return utilization / target_utilization, utilization, total // count


def usage_ratio(metrics: dict[str, PodMetric], target_value: int) -> tuple[float, int]:
    """(usage ratio to the target, average value) of a raw-value metric."""
    average = sum(m.value for m in metrics.values()) // len(metrics)
    return average / target_value, average

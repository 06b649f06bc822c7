"""The HorizontalPodAutoscaler (autoscaling/v2) controller: scale a workload to its pods' usage.

As upstream's `pkg/controller/podautoscaler/horizontal.go`, every
`sync_period` (15 s) `reconcile(key)` for each HPA:

1. reads the target's scale (`spec.scaleTargetRef`: a Deployment, ReplicaSet
   or StatefulSet, read as its `scale` subresource shows it: spec.replicas and
   the selector); failing that: AbleToScale False, FailedGetScale;
2. remembers the current count as its first recommendation (so a new HPA
   does not scale down before the stabilization window has passed);
3. picks the desired count:
   - target at 0 replicas (and minReplicas > 0): autoscaling is off
     (ScalingActive False, ScalingDisabled);
   - above maxReplicas / below minReplicas: that bound;
   - otherwise the largest count any metric proposes (`hpa_replicas`), each
     from the pods matching the scale's selector and their usage from the
     metrics API (`hpa_metrics`); if every metric failed, or some failed and
     the others propose a scale-down, nothing is changed (ScalingActive
     False with the first failure's reason, FailedComputeMetricsReplicas);
     then stabilization windows and scaling policies (`hpa_behavior`);
4. writes the new count through the target's `scale` subresource, with the
   event SuccessfulRescale "New size: N; reason: ..." (or FailedRescale);
5. writes status: currentReplicas, desiredReplicas, currentMetrics,
   lastScaleTime (when it scaled), observedGeneration and the conditions
   AbleToScale, ScalingActive and ScalingLimited with upstream's reasons.

Supported metrics: `Resource` and `ContainerResource` (cpu, memory, any
resource the metrics API reports) with `Utilization` (percent of the pods'
requests) or `AverageValue` targets. `Pods`, `Object` and `External` metrics
need the custom and external metrics APIs, which nanokube does not serve:
such a metric fails like a metric whose API is unavailable upstream.

The controller keeps, per HPA, its recent recommendations and scale events
(`hpa_behavior.History`): the windows and policies need them and the API does
not hold them (upstream keeps them in memory too). "Now" is `self.now`, and
every period and window is a constructor argument, so tests move time instead
of waiting.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import Any

from nanokube.api import errors, meta, selectors
from nanokube.api.kinds import Kind
from nanokube.api.resources.core import POD
from nanokube.api.resources.groups_autoscaling import HORIZONTAL_POD_AUTOSCALER as HPA
from nanokube.client import kinds
from nanokube.client.cache import split_key
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers import hpa_behavior as behavior
from nanokube.controllers.base import Controller
from nanokube.controllers.hpa_compute import Inputs, MetricFailure, replicas_for_metric
from nanokube.controllers.hpa_metrics import APIPodMetrics, PodMetricsLister
from nanokube.controllers.hpa_replicas import ReplicaCalculator
from nanokube.controllers.status import write_status

log = logging.getLogger(__name__)

Obj = dict[str, Any]

ABLE_TO_SCALE = "AbleToScale"
SCALING_ACTIVE = "ScalingActive"
SCALING_LIMITED = "ScalingLimited"
NORMAL, WARNING = "Normal", "Warning"


class MetricsFailed(Exception):
    """No count can be had from the metrics; `statuses` are those that were computed."""

    def __init__(self, message: str, statuses: list[Obj]) -> None:
        super().__init__(message)
        self.statuses = statuses


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _set_metrics(status: Obj, statuses: list[Obj] | None) -> None:
    if statuses:
        status["currentMetrics"] = statuses
    else:
        status.pop("currentMetrics", None)


def set_condition(
    status: Obj, type: str, value: str, reason: str, message: str, now: float
) -> None:
    """Upstream's setConditionInList: update in place; the transition time moves on a new status."""
    conditions: list[Obj] = status.setdefault("conditions", [])
    current = next((c for c in conditions if c.get("type") == type), None)
    if current is None:
        current = {"type": type, "status": value, "lastTransitionTime": _rfc3339(now)}
        conditions.append(current)
    elif current.get("status") != value:
        current["lastTransitionTime"] = _rfc3339(now)
    current.update(status=value, reason=reason, message=message)


class HorizontalController(Controller):
    """See the module docstring. `metrics` defaults to the metrics API through `client`,
    which the HTTP client reaches; in the server process pass the server's `MetricsAPI`
    (the in-process client reaches stored kinds only)."""

    name = "horizontal-pod-autoscaler"
    # upstream's --concurrent-horizontal-pod-autoscaler-syncs is 5; two suffice for nanokube.
    workers = 2

    def __init__(
        self,
        client: Client,
        informers: SharedInformerFactory,
        *,
        metrics: PodMetricsLister | None = None,
        sync_period: float = 15.0,
        downscale_stabilization: float = 300.0,
        tolerance: float = 0.1,
        cpu_initialization_period: float = 300.0,
        initial_readiness_delay: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(client, informers)
        # The HPAs, and the pods whose usage they average (matched by the target's selector).
        self.hpas = self.watch(informers.informer(HPA))
        self.pods = self.watch(informers.informer(POD))
        # Pod usage: the metrics API through the client, or the server's own in-process.
        self.metrics: PodMetricsLister = metrics or APIPodMetrics(client)
        # How often each HPA is looked at (--horizontal-pod-autoscaler-sync-period).
        self.sync_period = sync_period
        # The scale-down window when the HPA sets none
        # (--horizontal-pod-autoscaler-downscale-stabilization).
        self.downscale_stabilization = downscale_stabilization
        # The replica calculation, with the tolerance and the pod-readiness periods.
        self.calculator = ReplicaCalculator(
            tolerance, cpu_initialization_period, initial_readiness_delay
        )
        # The controller's clock (seconds since the epoch): a test may move it.
        self.now = clock
        # Recent recommendations and scale events per HPA key (see the module docstring).
        self.histories: dict[str, behavior.History] = {}
        self.hpas.add_event_handler(self.enqueue, self._on_update, self._on_delete)

    def _on_update(self, old: Obj, new: Obj) -> None:
        # Our own status writes come back as updates: only spec changes are news.
        if old.get("spec") != new.get("spec"):
            self.enqueue(new)

    def _on_delete(self, obj: Obj) -> None:
        self.enqueue(obj)

    # -- reconcile -------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        namespace, name = split_key(key)
        cached = self.hpas.get(name, namespace)
        if cached is None:
            self.histories.pop(key, None)
            return
        hpa = copy.deepcopy(cached)
        try:
            await self._autoscale(key, hpa)
        finally:
            # Every HPA is looked at again after the sync period, whatever happened.
            self.queue.add_after(key, self.sync_period)

    async def _autoscale(self, key: str, hpa: Obj) -> None:
        """One pass of steps 1-5 of the module docstring; failures end in status and events."""
        now = self.now()
        spec = hpa.get("spec") or {}
        status: Obj = copy.deepcopy(hpa.get("status") or {})
        status["observedGeneration"] = (hpa.get("metadata") or {}).get("generation", 1)
        status.setdefault("desiredReplicas", 0)  # always present upstream (no omitempty)
        # 1. the target's scale
        try:
            target_kind, scale = await self._get_scale(hpa)
        except errors.StatusError as e:
            message = f"the HPA controller was unable to get the target's current scale: {e}"
            self.events.record(hpa, WARNING, "FailedGetScale", str(e))
            set_condition(status, ABLE_TO_SCALE, "False", "FailedGetScale", message, now)
            await write_status(self.client, HPA, hpa, status)
            log.info("failed to get scale hpa=%s error=%s", key, e)
            return
        set_condition(
            status,
            ABLE_TO_SCALE,
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
            now,
        )
        current = scale["replicas"]
        # 2. the first recommendation
        history = self.histories.setdefault(key, behavior.History())
        if not history.recommendations:
            history.recommendations.append(behavior.Recommendation(current, now))
        # 3. the desired count
        try:
            desired, reason, metric_statuses = await self._desired(hpa, scale, status, history, now)
        except MetricsFailed as e:
            status["currentReplicas"] = current
            _set_metrics(status, e.statuses)
            await write_status(self.client, HPA, hpa, status)
            self.events.record(hpa, WARNING, "FailedComputeMetricsReplicas", str(e))
            log.info("failed to compute replicas hpa=%s error=%s", key, e)
            return
        # 4. the new count
        if desired != current:
            ref = spec.get("scaleTargetRef") or {}
            try:
                await self.client.patch(
                    target_kind,
                    ref.get("name", ""),
                    {"spec": {"replicas": desired}},
                    meta.namespace(hpa),
                    subresource="scale",
                )
            except errors.StatusError as e:
                self.events.record(
                    hpa,
                    WARNING,
                    "FailedRescale",
                    f"New size: {desired}; reason: {reason}; error: {e}",
                )
                set_condition(
                    status,
                    ABLE_TO_SCALE,
                    "False",
                    "FailedUpdateScale",
                    f"the HPA controller was unable to update the target scale: {e}",
                    now,
                )
                status["currentReplicas"] = current
                _set_metrics(status, metric_statuses)
                await write_status(self.client, HPA, hpa, status)
                log.info("failed to rescale hpa=%s error=%s", key, e)
                return
            set_condition(
                status,
                ABLE_TO_SCALE,
                "True",
                "SucceededRescale",
                f"the HPA controller was able to update the target scale to {desired}",
                now,
            )
            self.events.record(
                hpa, NORMAL, "SuccessfulRescale", f"New size: {desired}; reason: {reason}"
            )
            behavior.record_scale(history, spec.get("behavior"), current, desired, now)
            status["lastScaleTime"] = _rfc3339(now)
            log.info("rescaled hpa=%s from=%d to=%d reason=%s", key, current, desired, reason)
        # 5. status
        status.update(currentReplicas=current, desiredReplicas=desired)
        _set_metrics(status, metric_statuses)
        await write_status(self.client, HPA, hpa, status)

    async def _desired(
        self, hpa: Obj, scale: Obj, status: Obj, history: behavior.History, now: float
    ) -> tuple[int, str, list[Obj] | None]:
        """(desired count, the reason for a change, metric statuses); step 3."""
        spec = hpa.get("spec") or {}
        current = scale["replicas"]
        min_replicas = spec.get("minReplicas", 1)
        max_replicas = spec.get("maxReplicas", 1)
        if current == 0 and min_replicas != 0:
            set_condition(
                status,
                SCALING_ACTIVE,
                "False",
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
                now,
            )
            return current, "", None
        if current > max_replicas:
            return max_replicas, "Current number of replicas above Spec.MaxReplicas", None
        if current < min_replicas:
            return min_replicas, "Current number of replicas below Spec.MinReplicas", None
        proposed, metric, statuses = await self._replicas_for_metrics(hpa, scale, status, now)
        reason = ""
        if proposed > current:
            reason = f"{metric} above target"
        elif proposed < current:
            reason = "All metrics below target"
        rules = spec.get("behavior")
        if rules is None:
            decision = behavior.normalize(
                history,
                current,
                proposed,
                min_replicas,
                max_replicas,
                now,
                self.downscale_stabilization,
            )
        else:
            decision = behavior.normalize_with_behavior(
                history,
                rules,
                current,
                proposed,
                min_replicas,
                max_replicas,
                now,
                self.downscale_stabilization,
            )
        set_condition(status, ABLE_TO_SCALE, "True", *decision.able, now)
        set_condition(status, SCALING_LIMITED, str(decision.limited), *decision.limit, now)
        return decision.replicas, reason, statuses

    async def _get_scale(self, hpa: Obj) -> tuple[Kind, Obj]:
        """The target's kind and its scale: spec `replicas`, `statusReplicas`, `selector`."""
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        kind = kinds.builtin().by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if kind is None or kind.scale is None:
            raise errors.NotFound(
                f'no scale subresource for kind "{ref.get("kind")}" '
                f'in version "{ref.get("apiVersion")}"'
            )
        target = await self.client.get(kind, ref.get("name", ""), meta.namespace(hpa))
        selector = meta.get_path(target, kind.scale.selector)
        return kind, {
            "replicas": meta.get_path(target, kind.scale.spec_replicas, 0),
            "statusReplicas": meta.get_path(target, kind.scale.status_replicas, 0),
            "selector": str(selectors.label_selector_from_object(selector)) if selector else "",
        }

    async def _replicas_for_metrics(
        self, hpa: Obj, scale: Obj, status: Obj, now: float
    ) -> tuple[int, str, list[Obj]]:
        """The largest count any metric proposes, its metric's name, and every metric's status.

        Raises MetricsFailed when every metric failed, or when some failed and
        the others would scale down (upstream does not scale down on partial data).
        """
        text = scale["selector"]
        try:
            if not text:
                raise errors.BadRequest("selector is required")
            selector = selectors.parse_label_selector(text)
        except errors.BadRequest as e:
            required = not text
            self.events.record(
                hpa, WARNING, "SelectorRequired" if required else "InvalidSelector", str(e)
            )
            message = (
                "the HPA target's scale is missing a selector"
                if required
                else f"couldn't convert selector into a corresponding internal selector object: {e}"
            )
            set_condition(status, SCALING_ACTIVE, "False", "InvalidSelector", message, now)
            raise MetricsFailed(str(e), []) from None
        namespace = meta.namespace(hpa)
        inputs = Inputs(
            namespace=namespace,
            selector=text,
            pods=[p for p in self.pods.list(namespace) if selector.matches_object(p)],
            spec_replicas=scale["replicas"],
            now=now,
            lister=self.metrics,
            calculator=self.calculator,
        )
        specs = (hpa.get("spec") or {}).get("metrics") or []
        statuses: list[Obj] = []
        replicas, metric = 0, ""
        failures: list[MetricFailure] = []
        for spec in specs:
            try:
                proposal, name, metric_status = await replicas_for_metric(spec, inputs)
            except MetricFailure as e:
                # Upstream leaves a failed metric's status empty, keeping the positions.
                statuses.append({"type": ""})
                self.events.record(hpa, WARNING, e.reason, e.message)
                failures.append(e)
                continue
            statuses.append(metric_status)
            if replicas == 0 or proposal > replicas:
                replicas, metric = proposal, name
        if failures and (len(failures) >= len(specs) or replicas < scale["replicas"]):
            first = failures[0]
            set_condition(
                status,
                SCALING_ACTIVE,
                "False",
                first.reason,
                f"the HPA was unable to compute the replica count: {first.message}",
                now,
            )
            raise MetricsFailed(
                f"invalid metrics ({len(failures)} invalid out of {len(specs)}), "
                f"first error is: {first.error}",
                statuses,
            )
        if not specs:
            raise MetricsFailed("no metrics to compute a replica count from", statuses)
        set_condition(
            status,
            SCALING_ACTIVE,
            "True",
            "ValidMetricFound",
            f"the HPA was able to successfully calculate a replica count from {metric}",
            now,
        )
        return replicas, metric, statuses

"""The HorizontalPodAutoscaler controller against a real API server serving metrics.k8s.io.

Aspects: scale-up to the pods' CPU utilization (status, conditions, the
SuccessfulRescale event), within maxReplicas and the scale-up policies;
scale-down only after the stabilization window; the tolerance; AverageValue
targets; the min/max bounds and a target at zero; failures (no metrics,
missing requests, a missing target) in conditions and events; the periodic
resync. The replica calculation's treatment of unready and missing pods and
the behavior policies are tested as pure functions at the end.

There is no ReplicaSet controller here: the tests create the Deployment's pods
themselves, Running and Ready since long ago; their usage comes from the
simulated runtime's annotations (`sim.nanokube.io/cpu-usage`), read by the
metrics API. Time is the controller's injected clock, moved by the tests.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from controller_harness import eventually
from support import free_port

from nanokube.api.resources.apps import DEPLOYMENT
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_event import EVENT
from nanokube.api.resources.groups_autoscaling import HORIZONTAL_POD_AUTOSCALER as HPA
from nanokube.apiserver import metrics
from nanokube.apiserver.server import APIServer, APIServerConfig, build_app
from nanokube.apiserver.server import ensure_system_namespaces as system_namespaces
from nanokube.client.http import HTTPClient
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.interface import Client
from nanokube.controllers import hpa_behavior as behavior
from nanokube.controllers.hpa import HorizontalController
from nanokube.controllers.hpa_metrics import PodMetric
from nanokube.controllers.hpa_replicas import ReplicaCalculator
from nanokube.kubelet import simulated_pods
from nanokube.storage.memory import MemoryStore

CLIENTS = ("in-process", "http")
Obj = dict[str, Any]
LABELS = {"app": "web"}
LONG_AGO = "2020-01-01T00:00:00Z"
KEY = "default/web"


@dataclass
class Stack:
    server: APIServer
    metrics: metrics.MetricsAPI


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    """An API server whose metrics API reports the simulated runtime's usage of each pod."""
    srv = build_app(APIServerConfig(store=MemoryStore(), port=free_port()))
    sources = metrics.MetricsSources()
    sources.add(metrics.PodUsageSource(simulated_pods.usage))
    api = metrics.MetricsAPI(srv.resources, sources)
    metrics.register(srv.app, api)
    await srv.cache.start()
    await system_namespaces(srv.resources, srv.registry)
    runner = web.AppRunner(srv.app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", srv.config.port).start()
    try:
        yield Stack(srv, api)
    finally:
        await srv.cache.stop()
        await runner.cleanup()


@pytest.fixture
def server(stack: Stack) -> APIServer:
    return stack.server


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def controller(
    client: Client, informers: SharedInformerFactory, stack: Stack
) -> AsyncIterator[HorizontalController]:
    """The controller with a clock of its own; over HTTP it reads the metrics API over HTTP."""
    in_process = not isinstance(client, HTTPClient)
    hpa = HorizontalController(
        client, informers, metrics=stack.metrics if in_process else None, clock=Clock()
    )
    informers.start()
    await informers.wait_for_cache_sync()
    try:
        yield hpa
    finally:
        await hpa.stop()


def clock(c: HorizontalController) -> Clock:
    assert isinstance(c.now, Clock)
    return c.now


async def make_deployment(client: Client, replicas: int) -> Obj:
    template = {
        "metadata": {"labels": LABELS},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
    }
    body = {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": LABELS}, "template": template},
    }
    return await client.create(DEPLOYMENT, body)


async def make_pods(
    client: Client,
    count: int,
    cpu: str = "",
    memory: str = "",
    *,
    request: Obj | None = None,
    phase: str = "Running",
    containers: tuple[str, ...] = ("web",),
) -> None:
    """`count` pods (Running and long Ready unless `phase` says otherwise) of the Deployment using `cpu` / `memory`."""
    annotations = {}
    if cpu:
        annotations[simulated_pods.CPU_USAGE] = cpu
    if memory:
        annotations[simulated_pods.MEMORY_USAGE] = memory
    requests = {"cpu": "100m", "memory": "64Mi"} if request is None else request
    for i in range(count):
        pod = await client.create(
            POD,
            {
                "metadata": {
                    "name": f"web-{i}",
                    "namespace": "default",
                    "labels": LABELS,
                    "annotations": annotations,
                },
                "spec": {
                    "nodeName": "node-a",
                    "containers": [
                        {"name": c, "image": "nginx", "resources": {"requests": requests}}
                        for c in containers
                    ],
                },
            },
        )
        pod["status"] = {
            "phase": phase,
            "startTime": LONG_AGO,
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": LONG_AGO}],
        }
        await client.update(POD, pod, subresource="status")


async def make_hpa(client: Client, *, max_replicas: int = 10, **spec: Any) -> Obj:
    body = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50},
                    },
                }
            ],
            **spec,
        },
    }
    return await client.create(HPA, body)


async def synced(c: HorizontalController, pods: int) -> None:
    """Wait until the controller's caches hold the HPA and `pods` pods."""
    await eventually(lambda: _has(c, pods))


async def _has(c: HorizontalController, pods: int) -> bool:
    return c.hpas.get("web", "default") is not None and len(c.pods.list("default")) == pods


async def replicas(client: Client) -> int:
    count: int = (await client.get(DEPLOYMENT, "web", "default"))["spec"]["replicas"]
    return count


async def hpa_status(client: Client) -> Obj:
    status: Obj = (await client.get(HPA, "web", "default")).get("status") or {}
    return status


def condition(status: Obj, type: str) -> tuple[str, str]:
    found = next(c for c in status["conditions"] if c["type"] == type)
    return found["status"], found["reason"]


async def events(client: Client, reason: str) -> list[str]:
    items = (await client.list(EVENT, "default"))["items"]
    return [e["message"] for e in items if e["reason"] == reason]


# -- scaling ---------------------------------------------------------------------------


async def test_scales_up_to_the_cpu_utilization(
    client: Client, controller: HorizontalController
) -> None:
    await make_deployment(client, 2)
    await make_pods(client, 2, cpu="100m")
    await make_hpa(client)
    await synced(controller, 2)
    await controller.reconcile(KEY)
    assert await replicas(client) == 4
    status = await hpa_status(client)
    assert status["currentReplicas"] == 2 and status["desiredReplicas"] == 4
    assert status["lastScaleTime"] and status["observedGeneration"] == 1
    assert status["currentMetrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "current": {"averageUtilization": 100, "averageValue": "100m"},
            },
        }
    ]
    assert condition(status, "AbleToScale") == ("True", "SucceededRescale")
    assert condition(status, "ScalingActive") == ("True", "ValidMetricFound")
    assert condition(status, "ScalingLimited") == ("False", "DesiredWithinRange")
    expected = "New size: 4; reason: cpu resource utilization (percentage of request) above target"
    assert await eventually(lambda: events(client, "SuccessfulRescale")) == [expected]


async def test_scale_up_stops_at_max_replicas(
    client: Client, controller: HorizontalController
) -> None:
    await make_deployment(client, 2)
    await make_pods(client, 2, cpu="100m")
    await make_hpa(client, max_replicas=3)
    await synced(controller, 2)
    await controller.reconcile(KEY)
    assert await replicas(client) == 3
    status = await hpa_status(client)
    assert condition(status, "ScalingLimited") == ("True", "TooManyReplicas")


async def test_scale_up_follows_the_policy_period(
    client: Client, controller: HorizontalController
) -> None:
    await make_deployment(client, 2)
    await make_pods(client, 2, cpu="100m")
    one_per_minute = {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}
    await make_hpa(client, behavior={"scaleUp": one_per_minute})
    await synced(controller, 2)
    await controller.reconcile(KEY)
    assert await replicas(client) == 3
    assert condition(await hpa_status(client), "ScalingLimited") == ("True", "ScaleUpLimit")
    clock(controller).t += 30  # still within the period: no more
    await controller.reconcile(KEY)
    assert await replicas(client) == 3
    clock(controller).t += 31
    await controller.reconcile(KEY)
    assert await replicas(client) == 4


async def test_scales_down_only_after_the_stabilization_window(
    client: Client, controller: HorizontalController
) -> None:
    await make_deployment(client, 4)
    await make_pods(client, 4, cpu="10m")
    await make_hpa(client)
    await synced(controller, 4)
    await controller.reconcile(KEY)
    assert await replicas(client) == 4
    status = await hpa_status(client)
    assert condition(status, "AbleToScale") == ("True", "ScaleDownStabilized")
    assert status["desiredReplicas"] == 4
    clock(controller).t += 200
    await controller.reconcile(KEY)
    assert await replicas(client) == 4
    clock(controller).t += 101  # the first recommendation (4) is now older than 300 s
    await controller.reconcile(KEY)
    assert await replicas(client) == 1
    assert await eventually(lambda: events(client, "SuccessfulRescale")) == [
        "New size: 1; reason: All metrics below target"
    ]


async def test_usage_within_tolerance_changes_nothing(
    client: Client, controller: HorizontalController
) -> None:
    await make_deployment(client, 2)
    await make_pods(client, 2, cpu="54m")
    await make_hpa(client)
    await synced(controller, 2)
    await controller.reconcile(KEY)
    assert await replicas(client) == 2
    status = await hpa_status(client)
    assert status["desiredReplicas"] == 2 and "lastScaleTime" not in status
    assert status["currentMetrics"][0]["resource"]["current"]["averageUtilization"] == 54


async def test_average_value_target(client: Client, controller: HorizontalController) -> None:
    await make_deployment(client, 2)
    await make_pods(client, 2, memory="64Mi")
    memory = {
        "type": "Resource",
        "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "32Mi"}},
    }
    await make_hpa(client, metrics=[memory])
    await synced(controller, 2)
    await controller.reconcile(KEY)
    assert await replicas(client) == 4
    status = await hpa_status(client)
    assert status["currentMetrics"][0]["resource"]["current"] == {"averageValue": "67108864"}
    expected = "New size: 4; reason: memory resource above target"
    assert await eventually(lambda: events(client, "SuccessfulRescale")) == [expected]


async def test_container_resource_metric(client: Client, controller: HorizontalController) -> None:
    await make_deployment(client, 2)
    # 200m per pod, split evenly: 100m in `web` (100% of its request), 100m in `log`.
    await make_pods(client, 2, cpu="200m", containers=("web", "log"))
    target = {"type": "Utilization", "averageUtilization": 50}
    metric = {
        "type": "ContainerResource",
        "containerResource": {"name": "cpu", "container": "web", "target": target},
    }
    await make_hpa(client, metrics=[metric])
    await synced(controller, 2)
    await controller.reconcile(KEY)
    assert await replicas(client) == 4
    status = await hpa_status(client)
    assert status["currentMetrics"] == [
        {
            "type": "ContainerResource",
            "containerResource": {
                "name": "cpu",
                "container": "web",
                "current": {"averageUtilization": 100, "averageValue": "100m"},
            },
        }
    ]


async def test_bounds_and_a_target_at_zero(
    client: Client, controller: HorizontalController
) -> None:
    await make_deployment(client, 12)
    await make_hpa(client)
    await synced(controller, 0)
    await controller.reconcile(KEY)
    assert await replicas(client) == 10
    assert await eventually(lambda: events(client, "SuccessfulRescale")) == [
        "New size: 10; reason: Current number of replicas above Spec.MaxReplicas"
    ]
    await client.patch(DEPLOYMENT, "web", {"spec": {"replicas": 0}}, "default")
    await controller.reconcile(KEY)
    assert await replicas(client) == 0
    status = await hpa_status(client)
    assert condition(status, "ScalingActive") == ("False", "ScalingDisabled")


# -- failures --------------------------------------------------------------------------


async def test_missing_requests_change_nothing_and_say_why(
    client: Client, controller: HorizontalController
) -> None:
    await make_deployment(client, 2)
    await make_pods(client, 2, cpu="100m", request={"memory": "64Mi"})
    await make_hpa(client)
    await synced(controller, 2)
    await controller.reconcile(KEY)
    assert await replicas(client) == 2
    status = await hpa_status(client)
    assert condition(status, "AbleToScale") == ("True", "SucceededGetScale")
    assert condition(status, "ScalingActive") == ("False", "FailedGetResourceMetric")
    message = next(c for c in status["conditions"] if c["type"] == "ScalingActive")["message"]
    assert message.startswith(
        "the HPA was unable to compute the replica count: failed to get cpu utilization: "
        "missing request for cpu in container web of Pod web-"
    )
    failed = await eventually(lambda: events(client, "FailedComputeMetricsReplicas"))
    assert failed[0].startswith("invalid metrics (1 invalid out of 1), first error is: ")


async def test_no_figures_at_all(client: Client, controller: HorizontalController) -> None:
    await make_deployment(client, 2)
    await make_pods(client, 2, cpu="100m", phase="Pending")
    await make_hpa(client)
    await synced(controller, 2)
    await controller.reconcile(KEY)
    assert await replicas(client) == 2
    status = await hpa_status(client)
    message = next(c for c in status["conditions"] if c["type"] == "ScalingActive")["message"]
    assert message == (
        "the HPA was unable to compute the replica count: failed to get cpu utilization: "
        "unable to get metrics for resource cpu: no metrics returned from resource metrics API"
    )
    assert "currentMetrics" not in status or status["currentMetrics"] == [{"type": ""}]


async def test_missing_target(client: Client, controller: HorizontalController) -> None:
    await make_hpa(client)
    await synced(controller, 0)
    await controller.reconcile(KEY)
    status = await hpa_status(client)
    assert condition(status, "AbleToScale") == ("False", "FailedGetScale")
    assert await eventually(lambda: events(client, "FailedGetScale"))


# -- the running controller -------------------------------------------------------------


async def test_resyncs_every_sync_period(client: Client, controller: HorizontalController) -> None:
    controller.sync_period = 0.05
    await make_deployment(client, 1)
    await make_pods(client, 1, cpu="50m")
    await make_hpa(client)
    controller.start()
    await eventually(lambda: hpa_status(client))
    assert await replicas(client) == 1
    pod = await client.get(POD, "web-0", "default")
    pod["metadata"]["annotations"][simulated_pods.CPU_USAGE] = "150m"
    await client.update(POD, pod)
    await eventually(lambda: _replicas_are(client, 3))


async def _replicas_are(client: Client, n: int) -> bool:
    return await replicas(client) == n


# -- the calculation alone -------------------------------------------------------------


def pods(*phases: str) -> list[Obj]:
    """Pods web-0.. in these phases (Running ones long Ready), each requesting 100m CPU."""
    out = []
    for i, phase in enumerate(phases):
        status: Obj = {"phase": phase, "startTime": LONG_AGO}
        status["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": LONG_AGO}]
        container = {"name": "c", "resources": {"requests": {"cpu": "100m"}}}
        out.append(
            {
                "metadata": {"name": f"web-{i}"},
                "spec": {"containers": [container]},
                "status": status,
            }
        )
    return out


def usage(**milli: int) -> dict[str, PodMetric]:
    return {name.replace("_", "-"): PodMetric(v, time.time(), 15.0) for name, v in milli.items()}


def test_unready_pods_count_as_idle_on_scale_up() -> None:
    calc = ReplicaCalculator()
    # One ready pod at 200% of a 50% target; three Pending: counted as using nothing,
    # the average (50%) is on target, so the count stays.
    four = pods("Running", "Pending", "Pending", "Pending")
    assert calc.resource_replicas(4, 50, "cpu", four, usage(web_0=100), time.time())[0] == 4
    # Without them, ceil(2.0 × 1 ready pod) = 2.
    assert calc.resource_replicas(4, 50, "cpu", four[:1], usage(web_0=100), time.time())[0] == 2


def test_young_pods_cpu_samples_wait_for_a_window() -> None:
    calc = ReplicaCalculator()
    now = time.time()
    young = pods("Running", "Running")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 5))
    young[1]["status"].update(startTime=stamp)
    young[1]["status"]["conditions"][0]["lastTransitionTime"] = stamp
    metrics = {"web-0": PodMetric(100, now, 15.0), "web-1": PodMetric(100, now, 15.0)}
    groups = calc.group_pods(young, metrics, "cpu", now)
    assert (groups.ready, groups.unready) == (1, {"web-1"})
    assert calc.group_pods(young, metrics, "memory", now).ready == 2


def test_missing_pods_count_as_full_on_scale_down_and_idle_on_scale_up() -> None:
    calc = ReplicaCalculator()
    four = pods("Running", "Running", "Running", "Running")
    # 10% each on three pods, one missing counted at 100%: (30 + 100) / 400 = 32% → 0.64 × 4.
    low = usage(web_0=10, web_1=10, web_2=10)
    assert calc.resource_replicas(4, 50, "cpu", four, low, time.time())[0] == 3
    # 100% on two pods, two missing counted at 0%: 50% is on target.
    high = usage(web_0=100, web_1=100)
    assert calc.resource_replicas(4, 50, "cpu", four, high, time.time())[0] == 4
    # Deleted and Failed pods are ignored.
    gone = pods("Running", "Failed")
    assert calc.resource_replicas(2, 50, "cpu", gone, usage(web_0=100), time.time())[0] == 2


def test_policies_select_max_min_or_disabled() -> None:
    history = behavior.History()
    rules = {
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ],
    }
    assert behavior.scale_up_limit(10, history, rules, 0.0) == 20
    assert behavior.scale_up_limit(10, history, {**rules, "selectPolicy": "Min"}, 0.0) == 14
    assert behavior.scale_up_limit(10, history, {**rules, "selectPolicy": "Disabled"}, 0.0) == 10
    down = {"policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}
    assert behavior.scale_down_limit(10, history, down, 0.0) == 5
    # A scale-down made 30 s ago counts against the period: it started from 10, not 5.
    behavior.record_scale(history, {"scaleDown": down}, 10, 5, 0.0)
    assert behavior.scale_down_limit(5, history, down, 30.0) == 5
    assert behavior.scale_down_limit(5, history, down, 61.0) == 2


def test_stabilization_with_behavior_applies_both_windows() -> None:
    history = behavior.History([behavior.Recommendation(6, 0.0)])
    rules = {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 100, "periodSeconds": 15}],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 60,
            "policies": [{"type": "Pods", "value": 100, "periodSeconds": 15}],
        },
    }
    held = behavior.normalize_with_behavior(history, rules, 6, 2, 1, 10, 30.0, 300.0)
    assert held.replicas == 6 and held.able[0] == "ScaleDownStabilized"
    released = behavior.normalize_with_behavior(history, rules, 6, 2, 1, 10, 91.0, 300.0)
    assert released.replicas == 2 and released.limit[0] == "DesiredWithinRange"

"""The metrics.k8s.io/v1beta1 API over HTTP, against a real API server (memory store).

Aspects: discovery (legacy and aggregated) lists the group with `pods`
(PodMetrics, namespaced) and `nodes` (NodeMetrics, cluster); PodMetrics and
NodeMetrics lists and GETs are shaped as metrics-server's (timestamp, window,
containers with canonical quantities); label selectors; pods and nodes without
figures are left out of lists and are NotFound on GET; `MetricsSources`
routes by node; `PodUsageSource` reads the simulated runtime's annotations
and sums a node's pods; the real `kubectl top pod|node` reads it all.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from support import free_port

from nanokube.api.resources.core import POD
from nanokube.api.resources.core_node import NODE
from nanokube.apiserver import metrics, patching
from nanokube.apiserver.server import APIServer, APIServerConfig, build_app
from nanokube.apiserver.server import ensure_system_namespaces as system_namespaces
from nanokube.client.inprocess import InProcessClient
from nanokube.kubelet import simulated_pods
from nanokube.storage.memory import MemoryStore

Obj = dict[str, Any]
AGG = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"


class Figures:
    """A MetricsSource with fixed figures by pod name and node name."""

    def __init__(self) -> None:
        self.pods: dict[str, dict[str, metrics.Usage]] = {}
        self.nodes: dict[str, metrics.Usage] = {}

    def pod_usage(self, pod: Obj) -> dict[str, metrics.Usage] | None:
        return self.pods.get(pod["metadata"]["name"])

    def node_usage(self, node: Obj, pods: list[Obj]) -> metrics.Usage | None:
        return self.nodes.get(node["metadata"]["name"])


@pytest.fixture
def sources() -> metrics.MetricsSources:
    return metrics.MetricsSources()


@pytest.fixture
async def server(sources: metrics.MetricsSources) -> AsyncIterator[APIServer]:
    """The API server with the metrics API served from `sources`."""
    srv = build_app(APIServerConfig(store=MemoryStore(), port=free_port()))
    metrics.register(srv.app, metrics.MetricsAPI(srv.resources, sources, clock=lambda: 1.7e9))
    await srv.cache.start()
    await system_namespaces(srv.resources, srv.registry)
    runner = web.AppRunner(srv.app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", srv.config.port).start()
    try:
        yield srv
    finally:
        await srv.cache.stop()
        await runner.cleanup()


@pytest.fixture
def api(server: APIServer) -> InProcessClient:
    return InProcessClient(server.resources, patching.patch)


async def make_pod(
    api: InProcessClient,
    name: str,
    *,
    namespace: str = "default",
    labels: dict[str, str] | None = None,
    node: str = "node-a",
    containers: tuple[str, ...] = ("app",),
    annotations: dict[str, str] | None = None,
    running: bool = True,
) -> Obj:
    pod = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": c, "image": "busybox"} for c in containers],
        },
    }
    created = await api.create(POD, pod)
    if running:
        created["status"] = {"phase": "Running"}
        created = await api.update(POD, created, subresource="status")
    return created


async def make_node(api: InProcessClient, name: str, labels: dict[str, str] | None = None) -> Obj:
    return await api.create(NODE, {"metadata": {"name": name, "labels": labels or {}}})


# -- discovery ---------------------------------------------------------------------


async def test_group_is_listed_in_legacy_discovery(client: Any) -> None:
    _, groups = await client.get("/apis")
    entry = next(g for g in groups["groups"] if g["name"] == "metrics.k8s.io")
    assert entry["preferredVersion"] == {
        "groupVersion": "metrics.k8s.io/v1beta1",
        "version": "v1beta1",
    }
    status, group = await client.get("/apis/metrics.k8s.io")
    assert status == 200 and group["kind"] == "APIGroup"
    status, rl = await client.get("/apis/metrics.k8s.io/v1beta1")
    assert status == 200 and rl["groupVersion"] == "metrics.k8s.io/v1beta1"
    by_name = {r["name"]: r for r in rl["resources"]}
    assert by_name["pods"]["kind"] == "PodMetrics" and by_name["pods"]["namespaced"]
    assert by_name["nodes"]["kind"] == "NodeMetrics" and not by_name["nodes"]["namespaced"]
    assert by_name["pods"]["verbs"] == ["get", "list"] == by_name["nodes"]["verbs"]


async def test_group_is_listed_in_aggregated_discovery(client: Any) -> None:
    status, body, resp = await client.request("GET", "/apis", headers={"Accept": AGG})
    assert status == 200 and "as=APIGroupDiscoveryList" in resp.headers["Content-Type"]
    item = next(i for i in body["items"] if i["metadata"]["name"] == "metrics.k8s.io")
    (version,) = item["versions"]
    assert version["version"] == "v1beta1"
    by_name = {r["resource"]: r for r in version["resources"]}
    assert by_name["pods"]["scope"] == "Namespaced"
    assert by_name["pods"]["responseKind"] == {
        "group": "metrics.k8s.io",
        "version": "v1beta1",
        "kind": "PodMetrics",
    }
    assert by_name["nodes"]["scope"] == "Cluster"
    assert by_name["nodes"]["responseKind"]["kind"] == "NodeMetrics"


# -- pods --------------------------------------------------------------------------


async def test_pod_metrics_list_is_shaped_as_metrics_server(
    client: Any, api: InProcessClient, sources: metrics.MetricsSources
) -> None:
    figures = Figures()
    sources.add(figures)
    await make_pod(api, "web-1", labels={"app": "web"}, containers=("app", "sidecar"))
    figures.pods["web-1"] = {"app": (123_456, 12 * 1024), "sidecar": (5_000_000, 1000)}
    status, body = await client.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")
    assert status == 200
    assert (body["kind"], body["apiVersion"]) == ("PodMetricsList", "metrics.k8s.io/v1beta1")
    (item,) = body["items"]
    assert item["kind"] == "PodMetrics"
    assert item["metadata"]["name"] == "web-1" and item["metadata"]["namespace"] == "default"
    assert item["metadata"]["labels"] == {"app": "web"}
    assert item["timestamp"] == "2023-11-14T22:13:20Z"
    assert item["window"] == "15s"
    assert item["containers"] == [
        {"name": "app", "usage": {"cpu": "123456n", "memory": "12Ki"}},
        {"name": "sidecar", "usage": {"cpu": "5m", "memory": "1000"}},
    ]


async def test_pods_without_figures_are_left_out_and_not_found(
    client: Any, api: InProcessClient, sources: metrics.MetricsSources
) -> None:
    figures = Figures()
    sources.add(figures)
    await make_pod(api, "measured")
    await make_pod(api, "unmeasured")
    figures.pods["measured"] = {"app": (1, 1)}
    _, body = await client.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")
    assert [i["metadata"]["name"] for i in body["items"]] == ["measured"]
    status, one = await client.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/measured")
    assert status == 200 and one["kind"] == "PodMetrics"
    status, err = await client.get(
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/unmeasured"
    )
    assert status == 404 and err["reason"] == "NotFound"
    assert err["message"] == 'podmetrics.metrics.k8s.io "default/unmeasured" not found'
    status, err = await client.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nothing")
    assert status == 404 and err["reason"] == "NotFound"


async def test_label_selector_and_namespaces(
    client: Any, api: InProcessClient, sources: metrics.MetricsSources
) -> None:
    figures = Figures()
    sources.add(figures)
    await make_pod(api, "a", labels={"app": "web"})
    await make_pod(api, "b", labels={"app": "db"})
    await make_pod(api, "c", namespace="kube-system", labels={"app": "web"})
    for name in "abc":
        figures.pods[name] = {"app": (1_000_000, 1024)}
    base = "/apis/metrics.k8s.io/v1beta1"
    _, web_pods = await client.get(f"{base}/namespaces/default/pods?labelSelector=app%3Dweb")
    assert [i["metadata"]["name"] for i in web_pods["items"]] == ["a"]
    _, everywhere = await client.get(f"{base}/pods?labelSelector=app%3Dweb")
    assert sorted(i["metadata"]["name"] for i in everywhere["items"]) == ["a", "c"]
    _, all_pods = await client.get(f"{base}/pods")
    assert len(all_pods["items"]) == 3
    status, err = await client.get(f"{base}/pods?labelSelector=%3D%3D%3D")
    assert status == 400 and err["reason"] == "BadRequest"


# -- nodes and sources ---------------------------------------------------------------


async def test_node_metrics_sum_the_simulated_pods_of_the_node(
    client: Any, api: InProcessClient, sources: metrics.MetricsSources
) -> None:
    sources.add(metrics.PodUsageSource(simulated_pods.usage))
    await make_node(api, "node-a", {"zone": "a"})
    await make_node(api, "node-b")
    usage = {simulated_pods.CPU_USAGE: "250m", simulated_pods.MEMORY_USAGE: "64Mi"}
    await make_pod(api, "one", node="node-a", annotations=usage)
    await make_pod(api, "two", node="node-a", annotations=usage, containers=("x", "y"))
    await make_pod(api, "pending", node="node-a", annotations=usage, running=False)
    base = "/apis/metrics.k8s.io/v1beta1"
    _, nodes = await client.get(f"{base}/nodes")
    assert nodes["kind"] == "NodeMetricsList"
    by_name = {i["metadata"]["name"]: i for i in nodes["items"]}
    assert by_name["node-a"]["usage"] == {"cpu": "500m", "memory": "128Mi"}
    assert by_name["node-a"]["metadata"]["labels"] == {"zone": "a"}
    assert by_name["node-b"]["usage"] == {"cpu": "0", "memory": "0"}
    status, one = await client.get(f"{base}/nodes/node-a")
    assert status == 200 and one["kind"] == "NodeMetrics" and one["window"] == "15s"
    _, selected = await client.get(f"{base}/nodes?labelSelector=zone%3Da")
    assert [i["metadata"]["name"] for i in selected["items"]] == ["node-a"]
    # The simulated pod's figure is split over its containers; a Pending pod has none.
    _, two = await client.get(f"{base}/namespaces/default/pods/two")
    assert [c["usage"] for c in two["containers"]] == [{"cpu": "125m", "memory": "32Mi"}] * 2
    status, _ = await client.get(f"{base}/namespaces/default/pods/pending")
    assert status == 404


async def test_sources_are_routed_by_node(
    client: Any, api: InProcessClient, sources: metrics.MetricsSources
) -> None:
    own, fallback = Figures(), Figures()
    sources.add(own, nodes=["node-a"])
    sources.add(fallback)
    await make_node(api, "node-a")
    await make_node(api, "node-b")
    await make_pod(api, "on-a", node="node-a")
    await make_pod(api, "on-b", node="node-b")
    own.pods["on-a"] = {"app": (1, 0)}
    own.pods["on-b"] = {"app": (2, 0)}
    fallback.pods["on-a"] = {"app": (3, 0)}
    fallback.pods["on-b"] = {"app": (4, 0)}
    own.nodes["node-a"] = (1_000_000_000, 0)
    fallback.nodes["node-b"] = (2_000_000_000, 0)
    base = "/apis/metrics.k8s.io/v1beta1"
    _, pods = await client.get(f"{base}/pods")
    cpu = {i["metadata"]["name"]: i["containers"][0]["usage"]["cpu"] for i in pods["items"]}
    assert cpu == {"on-a": "1n", "on-b": "4n"}
    _, nodes = await client.get(f"{base}/nodes")
    assert {i["metadata"]["name"]: i["usage"]["cpu"] for i in nodes["items"]} == {
        "node-a": "1",
        "node-b": "2",
    }
    sources.remove(own)
    _, pods = await client.get(f"{base}/pods")
    assert sorted(i["containers"][0]["usage"]["cpu"] for i in pods["items"]) == ["3n", "4n"]
    sources.remove(fallback)
    _, pods = await client.get(f"{base}/pods")
    assert pods["items"] == []


def test_registering_again_replaces_the_api_served() -> None:
    srv = build_app(APIServerConfig(store=MemoryStore(), port=free_port()))
    first = metrics.MetricsAPI(srv.resources, metrics.MetricsSources())
    second = metrics.MetricsAPI(srv.resources, metrics.MetricsSources())
    metrics.register(srv.app, first)
    routes = len(srv.app.router.routes())
    metrics.register(srv.app, second)
    assert srv.app[metrics.METRICS_API] is second
    assert len(srv.app.router.routes()) == routes


def test_quantities_are_canonical() -> None:
    assert metrics.cpu_quantity(123) == "123n"
    assert metrics.cpu_quantity(250_000) == "250u"
    assert metrics.cpu_quantity(1_500_000_000) == "1500m"
    assert metrics.cpu_quantity(2_000_000_000) == "2"
    assert metrics.cpu_quantity(0) == "0"
    assert metrics.memory_quantity(64 * 1024 * 1024) == "64Mi"
    assert metrics.memory_quantity(1500) == "1500"
    assert metrics.duration(15) == "15s" and metrics.duration(10.5) == "10.5s"


# -- kubectl top ---------------------------------------------------------------------

KUBECTL = shutil.which("kubectl")


async def kubectl(tmp_path: Path, server: APIServer, *args: str) -> str:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{server.config.port}'}}}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {}}]\n"
    )
    env = {**os.environ, "KUBECACHEDIR": str(tmp_path / "cache")}
    env.pop("KUBECONFIG", None)
    assert KUBECTL is not None
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        f"--kubeconfig={config}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
async def test_kubectl_top(
    tmp_path: Path, server: APIServer, api: InProcessClient, sources: metrics.MetricsSources
) -> None:
    sources.add(metrics.PodUsageSource(simulated_pods.usage))
    node = await make_node(api, "node-a")
    node["status"] = {
        "capacity": {"cpu": "4", "memory": "8Gi"},
        "allocatable": {"cpu": "4", "memory": "8Gi"},
    }
    await api.update(NODE, node, subresource="status")
    usage = {simulated_pods.CPU_USAGE: "250m", simulated_pods.MEMORY_USAGE: "64Mi"}
    await make_pod(api, "web", node="node-a", annotations=usage, containers=("app", "log"))
    pods = (await kubectl(tmp_path, server, "top", "pod", "-n", "default")).splitlines()
    assert pods[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert pods[1].split() == ["web", "250m", "64Mi"]
    containers = await kubectl(tmp_path, server, "top", "pod", "web", "--containers")
    assert containers.splitlines()[1].split() == ["web", "app", "125m", "32Mi"]
    nodes = (await kubectl(tmp_path, server, "top", "node")).splitlines()
    assert nodes[1].split()[:3] == ["node-a", "250m", "6%"]

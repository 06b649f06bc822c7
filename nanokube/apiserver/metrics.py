"""The resource metrics API, `metrics.k8s.io/v1beta1`: what `kubectl top` and the HPA read.

Upstream, metrics-server (an aggregated API server) scrapes every kubelet's
`/metrics/resource` every 15 s and serves the latest CPU rate and memory
working set of each node and of each container of each pod. nanokube serves
the same API from the API server itself, with the figures coming from
pluggable sources:

- `MetricsSource` (a Protocol) answers for the pods and nodes it knows:
  `pod_usage(pod)` → {container: (CPU nanocores, memory bytes)} and
  `node_usage(node, pods)` → (CPU nanocores, memory bytes), or None when it
  has no figures. A pod or node without figures is left out of lists and a
  GET of it answers NotFound, as metrics-server does for what it has not
  scraped. Sources are handed the objects the API server has already read,
  so a source keeps no cache of pods of its own, and knows each pod's node
  and uid (a scraper must tell a re-created pod from its namesake).
- `MetricsSources` is itself a source that routes by node: a source is added
  for some node names (or as the fallback for every node), so the simulated
  nodes of this process, and later each real node, plug in their own.
- `PodUsageSource` turns a function of the pod into a source: the simulated
  runtime's `usage(pod)` (pod annotations `sim.nanokube.io/cpu-usage` /
  `memory-usage`) is wired in this way; a node's usage is the sum of its
  running pods'.

Sources are synchronous and answer from what they already hold, never by a
request of their own while a client waits. That is also the plan for nodes
in other processes (not built yet): a `KubeletScraper` source per Node that,
as metrics-server does, GETs the kubelet's `/metrics/resource` over HTTPS
(the Node's InternalIP and `status.daemonEndpoints.kubeletEndpoint.port`)
every `window` seconds, keeps the last two samples of the cumulative CPU
counters (`container_cpu_usage_seconds_total`, `node_cpu_usage_seconds_total`)
and the memory working sets, and answers with the CPU rate between the two
samples; a small loop over the Node list adds and removes one scraper per node
in `MetricsSources`.

Routes (GET only, JSON only; `labelSelector` and `fieldSelector` select the
pods or nodes whose metrics are listed):

    /apis/metrics.k8s.io/v1beta1/nodes[/NAME]                  NodeMetrics(List)
    /apis/metrics.k8s.io/v1beta1/pods                          PodMetricsList, all namespaces
    /apis/metrics.k8s.io/v1beta1/namespaces/NS/pods[/NAME]     PodMetrics(List)

`register(app, api)` adds them and lists the group in discovery (legacy and
aggregated: `kubectl top` requires the group in `/apis`). The HPA controller
reads pod metrics in-process through `MetricsAPI.pod_metrics_list`, the same
call the route makes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from typing import Any, Protocol

from aiohttp import web

from nanokube.api import errors
from nanokube.api.kinds import Kind
from nanokube.api.options import ListOptions
from nanokube.api.resources.core import POD
from nanokube.api.resources.core_node import NODE
from nanokube.api.validators import format_quantity
from nanokube.apiserver import codec, discovery
from nanokube.apiserver.handlers import list_options
from nanokube.apiserver.rest import ResourceStore

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# (CPU in nanocores, memory in bytes)
Usage = tuple[int, int]

GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
PREFIX = f"/apis/{API_VERSION}"
# metrics-server's default --metric-resolution: the interval its CPU rates are taken over.
DEFAULT_WINDOW = 15.0

# The group's discovery entries (served without stored kinds).
RESOURCES: list[Obj] = [
    {
        "name": "nodes",
        "singularName": "node",
        "namespaced": False,
        "kind": "NodeMetrics",
        "verbs": ["get", "list"],
    },
    {
        "name": "pods",
        "singularName": "pod",
        "namespaced": True,
        "kind": "PodMetrics",
        "verbs": ["get", "list"],
    },
]


class MetricsSource(Protocol):
    """Where usage figures come from; see the module docstring."""

    def pod_usage(self, pod: Obj) -> dict[str, Usage] | None:
        """Usage of each container of `pod` (a Pod object), or None if unknown."""
        ...

    def node_usage(self, node: Obj, pods: list[Obj]) -> Usage | None:
        """Usage of `node` (a Node object), or None; `pods` are the pods bound to it."""
        ...


def _node_of(pod: Obj) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def _name_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


class MetricsSources:
    """A source that asks the source added for an object's node (or the fallback)."""

    def __init__(self) -> None:
        # node name -> the source that measures it
        self._by_node: dict[str, MetricsSource] = {}
        # The source for nodes without one of their own (e.g. all simulated nodes).
        self._fallback: MetricsSource | None = None

    def add(self, source: MetricsSource, nodes: Iterable[str] | None = None) -> None:
        """Let `source` answer for `nodes` (every node without its own source when None)."""
        if nodes is None:
            self._fallback = source
            return
        for name in nodes:
            self._by_node[name] = source

    def remove(self, source: MetricsSource) -> None:
        """Forget `source` wherever it was added."""
        self._by_node = {n: s for n, s in self._by_node.items() if s is not source}
        if self._fallback is source:
            self._fallback = None

    def _for(self, node: str) -> MetricsSource | None:
        return self._by_node.get(node, self._fallback)

    def pod_usage(self, pod: Obj) -> dict[str, Usage] | None:
        source = self._for(_node_of(pod))
        return source.pod_usage(pod) if source is not None else None

    def node_usage(self, node: Obj, pods: list[Obj]) -> Usage | None:
        source = self._for(_name_of(node))
        return source.node_usage(node, pods) if source is not None else None


class PodUsageSource:
    """Figures computed from the pod object alone (the simulated runtime's `usage(pod)`).

    Only Running pods have figures. The pod's usage is split evenly over its
    containers (the simulated runtime has one figure per pod); a node uses
    what its running pods use.
    """

    def __init__(self, usage: Callable[[Obj], Usage]) -> None:
        self.usage = usage

    def pod_usage(self, pod: Obj) -> dict[str, Usage] | None:
        if (pod.get("status") or {}).get("phase") != "Running":
            return None
        names = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
        if not names:
            return None
        cpu, memory = self.usage(pod)
        n = len(names)
        out = {name: (cpu // n, memory // n) for name in names}
        # The remainders go to the first container, so the containers add up to the pod.
        first = names[0]
        out[first] = (out[first][0] + cpu % n, out[first][1] + memory % n)
        return out

    def node_usage(self, node: Obj, pods: list[Obj]) -> Usage | None:
        cpu = memory = 0
        for pod in pods:
            for c, m in (self.pod_usage(pod) or {}).values():
                cpu += c
                memory += m
        return cpu, memory


# -- formatting ------------------------------------------------------------------


def cpu_quantity(nanocores: int) -> str:
    """CPU as metrics-server prints it: `123456n`, `5m`, `2`."""
    return format_quantity(Fraction(max(nanocores, 0), 10**9))


def memory_quantity(nbytes: int) -> str:
    """Memory as metrics-server prints it: `12Ki` when a multiple of 1024, else bytes."""
    return format_quantity(Fraction(max(nbytes, 0)), binary=True)


def duration(seconds: float) -> str:
    """A Go duration string as metav1.Duration marshals it: `15s`, `10.5s`."""
    return f"{seconds:g}s"


def _usage(u: Usage) -> Obj:
    return {"cpu": cpu_quantity(u[0]), "memory": memory_quantity(u[1])}


class MetricsAPI:
    """PodMetrics and NodeMetrics built from the API server's pods and nodes and a source."""

    def __init__(
        self,
        resources: ResourceStore,
        source: MetricsSource,
        *,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Pods and Nodes are read from the server's own store (its watch cache).
        self.resources = resources
        self.source = source
        # The interval the CPU figures are averaged over, reported as `window`.
        self.window = window
        # Stamps `timestamp`: a test may fix it.
        self.clock = clock

    def _stamp(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock()))

    def _meta(self, obj: Obj, stamp: str) -> Obj:
        md = obj.get("metadata") or {}
        out: Obj = {"name": md.get("name", "")}
        if md.get("namespace"):
            out["namespace"] = md["namespace"]
        out["creationTimestamp"] = stamp
        if md.get("labels"):
            out["labels"] = dict(md["labels"])
        return out

    def _pod_metrics(self, pod: Obj, stamp: str) -> Obj | None:
        containers = self.source.pod_usage(pod)
        if containers is None:
            return None
        return {
            "kind": "PodMetrics",
            "apiVersion": API_VERSION,
            "metadata": self._meta(pod, stamp),
            "timestamp": stamp,
            "window": duration(self.window),
            "containers": [{"name": name, "usage": _usage(u)} for name, u in containers.items()],
        }

    def _node_metrics(self, node: Obj, pods: list[Obj], stamp: str) -> Obj | None:
        usage = self.source.node_usage(node, pods)
        if usage is None:
            return None
        return {
            "kind": "NodeMetrics",
            "apiVersion": API_VERSION,
            "metadata": self._meta(node, stamp),
            "timestamp": stamp,
            "window": duration(self.window),
            "usage": _usage(usage),
        }

    async def _list(self, kind: Kind, namespace: str, query: Mapping[str, str]) -> list[Obj]:
        selectors = {k: query[k] for k in ("labelSelector", "fieldSelector") if query.get(k)}
        listed = await self.resources.list(kind, namespace, list_options(kind, selectors))
        items: list[Obj] = listed.get("items") or []
        return items

    async def pod_metrics(self, namespace: str, name: str) -> Obj:
        pod = await self.resources.get(POD, namespace, name)
        found = self._pod_metrics(pod, self._stamp())
        if found is None:
            raise errors.not_found("podmetrics", f"{namespace}/{name}", GROUP)
        return found

    async def pod_metrics_list(
        self, namespace: str = "", label_selector: str = "", field_selector: str = ""
    ) -> Obj:
        """A PodMetricsList of the selected pods that have figures (all namespaces if "")."""
        query = {"labelSelector": label_selector, "fieldSelector": field_selector}
        stamp = self._stamp()
        items = []
        for pod in await self._list(POD, namespace, query):
            found = self._pod_metrics(pod, stamp)
            if found is not None:
                items.append(found)
        return {"kind": "PodMetricsList", "apiVersion": API_VERSION, "metadata": {}, "items": items}

    async def _pods_by_node(self) -> dict[str, list[Obj]]:
        out: dict[str, list[Obj]] = {}
        for pod in (await self.resources.list(POD, "", ListOptions())).get("items") or []:
            node = _node_of(pod)
            if node:
                out.setdefault(node, []).append(pod)
        return out

    async def node_metrics(self, name: str) -> Obj:
        node = await self.resources.get(NODE, "", name)
        pods = (await self._pods_by_node()).get(name, [])
        found = self._node_metrics(node, pods, self._stamp())
        if found is None:
            raise errors.not_found("nodemetrics", name, GROUP)
        return found

    async def node_metrics_list(self, label_selector: str = "", field_selector: str = "") -> Obj:
        """A NodeMetricsList of the selected nodes that have figures."""
        nodes = await self._list(
            NODE, "", {"labelSelector": label_selector, "fieldSelector": field_selector}
        )
        by_node = await self._pods_by_node() if nodes else {}
        stamp = self._stamp()
        items = []
        for node in nodes:
            found = self._node_metrics(node, by_node.get(_name_of(node), []), stamp)
            if found is not None:
                items.append(found)
        return {
            "kind": "NodeMetricsList",
            "apiVersion": API_VERSION,
            "metadata": {},
            "items": items,
        }


# -- HTTP ------------------------------------------------------------------------


def add_discovery() -> None:
    """List `metrics.k8s.io/v1beta1` in discovery (once per process)."""
    if not any(g == GROUP for g, _, _ in discovery.EXTRA_GROUPS):
        discovery.EXTRA_GROUPS.append((GROUP, VERSION, RESOURCES))


# The MetricsAPI an application serves (set by `register`).
METRICS_API = web.AppKey("metrics_api", MetricsAPI)


def register(app: web.Application, api: MetricsAPI) -> None:
    """Serve `api` on `app` and list the group in discovery; call before the app starts.

    Registering again replaces the API served (routes are added once), so a
    test can put its own sources behind an app that already serves metrics.
    The routes are more specific than a catch-all resource route, so aiohttp
    (≥ 3.10, which resolves by longest prefix) prefers them whatever the order
    of registration.
    """
    add_discovery()
    first = METRICS_API not in app
    app[METRICS_API] = api
    if not first:
        return

    async def nodes(request: web.Request) -> web.Response:
        q = request.query
        body = await request.app[METRICS_API].node_metrics_list(
            q.get("labelSelector", ""), q.get("fieldSelector", "")
        )
        return codec.json_response(body)

    async def node(request: web.Request) -> web.Response:
        body = await request.app[METRICS_API].node_metrics(request.match_info["name"])
        return codec.json_response(body)

    async def pods(request: web.Request) -> web.Response:
        q = request.query
        body = await request.app[METRICS_API].pod_metrics_list(
            request.match_info.get("namespace", ""),
            q.get("labelSelector", ""),
            q.get("fieldSelector", ""),
        )
        return codec.json_response(body)

    async def pod(request: web.Request) -> web.Response:
        info = request.match_info
        body = await request.app[METRICS_API].pod_metrics(info["namespace"], info["name"])
        return codec.json_response(body)

    router = app.router
    router.add_get(f"{PREFIX}/nodes", nodes)
    router.add_get(f"{PREFIX}/nodes/{{name}}", node)
    router.add_get(f"{PREFIX}/pods", pods)
    router.add_get(f"{PREFIX}/namespaces/{{namespace}}/pods", pods)
    router.add_get(f"{PREFIX}/namespaces/{{namespace}}/pods/{{name}}", pod)
    log.info("metrics API registered group=%s", API_VERSION)

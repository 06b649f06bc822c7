"""Resource metrics of a node and its containers: what `kubectl top` and the HPA show.

Figures, as upstream's kubelet gives them to metrics-server:

- container CPU: the cumulative `cpuacct.usage` (ns) of the container's cgroup
  v1, read through `Runtime.stats` (`nanokube.runtime.oci.cgroups.stats`);
  a rate in nanocores is the difference of two samples over their interval;
- container memory: the working set, `memory.usage_in_bytes` minus
  `total_inactive_file` (the same call);
- node CPU: the non-idle jiffies of `/proc/stat` (user, nice, system, irq,
  softirq, steal) in ns; node memory: MemTotal − MemAvailable of `/proc/meminfo`.

`ResourceMetrics.collect()` takes one sample of everything; `run()` samples
every `window` seconds and keeps the last two samples. Two ways out:

- in the same process as the API server (`nanokube server` with its own
  agent), `ResourceMetrics` is a `nanokube.apiserver.metrics.MetricsSource`:
  `pod_usage(pod)` and `node_usage(node, pods)` answer from the last two
  samples (None until there are two, as metrics-server before its second scrape);
- for an agent in another process, `handle_resource_metrics` serves the
  kubelet's `GET /metrics/resource` on the agent's HTTPS server, in the
  Prometheus text format the kubelet uses (`container_cpu_usage_seconds_total`,
  `container_memory_working_set_bytes`, `container_start_time_seconds`,
  `pod_*`, `node_*`, `resource_scrape_error`; each sample with its timestamp
  in ms): the API server scrapes it as metrics-server does and computes rates
  from two scrapes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from nanokube.runtime.contract import Runtime, RuntimeFailure

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Usage = tuple[int, int]  # (CPU nanocores, memory bytes), as the MetricsSource Protocol

DEFAULT_WINDOW = 15.0
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# /proc/stat's cpu columns: user nice system idle iowait irq softirq steal guest guest_nice
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


def node_cpu_ns(path: str = "/proc/stat") -> int:
    """CPU time the node has spent busy since boot, in ns."""
    with open(path) as f:
        for line in f:
            if line.startswith("cpu "):
                values = [int(v) for v in line.split()[1:]]
                busy = sum(values[i] for i in _BUSY_COLUMNS if i < len(values))
                return busy * 1_000_000_000 // _CLK_TCK
    raise OSError(f"no cpu line in {path}")


def node_memory_working_set(path: str = "/proc/meminfo") -> int:
    total = available = 0
    with open(path) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key == "MemTotal":
                total = int(rest.split()[0]) * 1024
            elif key == "MemAvailable":
                available = int(rest.split()[0]) * 1024
    return max(total - available, 0)


@dataclass(frozen=True)
class ContainerSample:
    container_id: str
    namespace: str
    pod: str
    pod_uid: str
    container: str
    cpu_ns: int
    memory_working_set: int
    started_at: float
    timestamp: float


@dataclass
class Sample:
    timestamp: float
    node_cpu_ns: int
    node_memory_working_set: int
    containers: list[ContainerSample] = field(default_factory=list)
    errors: int = 0

    def by_uid(self) -> dict[str, list[ContainerSample]]:
        out: dict[str, list[ContainerSample]] = {}
        for c in self.containers:
            out.setdefault(c.pod_uid, []).append(c)
        return out


def _rate(before: int, after: int, seconds: float) -> int:
    """ns of CPU per second of wall time = nanocores; 0 for a counter that went back."""
    if seconds <= 0 or after < before:
        return 0
    return int((after - before) / seconds)


class ResourceMetrics:
    """Samples the runtime's containers and the node; a MetricsSource for this node."""

    def __init__(
        self,
        runtime: Runtime | None,
        node_name: str,
        *,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.time,
        proc: str = "/proc",
    ) -> None:
        # None until the agent has built its runtime (after the podCIDR): node figures only.
        self.runtime = runtime
        self.node_name = node_name
        self.window = window
        self.clock = clock
        self.proc = proc
        # The two most recent samples (older first); rates are taken between them.
        self.samples: list[Sample] = []

    async def collect(self) -> Sample:
        """One sample of every running container and of the node."""
        sample = Sample(
            timestamp=self.clock(),
            node_cpu_ns=node_cpu_ns(f"{self.proc}/stat"),
            node_memory_working_set=node_memory_working_set(f"{self.proc}/meminfo"),
        )
        if self.runtime is None:
            return sample
        sandboxes = {s.id: s for s in await self.runtime.list_sandboxes()}
        for status in await self.runtime.list_containers():
            sandbox = sandboxes.get(status.sandbox_id)
            if status.state != "running" or sandbox is None:
                continue
            try:
                stats = await self.runtime.stats(status.id)
            except RuntimeFailure as e:
                # Exited between the list and the read: counted, as the kubelet's scrape error.
                log.debug("no stats container=%s error=%s", status.id, e)
                sample.errors += 1
                continue
            sample.containers.append(
                ContainerSample(
                    container_id=status.id,
                    namespace=sandbox.config.namespace,
                    pod=sandbox.config.name,
                    pod_uid=sandbox.config.uid,
                    container=status.name,
                    cpu_ns=stats.cpu_usage_ns,
                    memory_working_set=stats.memory_working_set_bytes,
                    started_at=status.started_at or status.created_at,
                    timestamp=stats.timestamp,
                )
            )
        return sample

    def add(self, sample: Sample) -> None:
        self.samples = [*self.samples[-1:], sample]

    async def run(self) -> None:
        """Sample every `window` seconds until cancelled."""
        while True:
            try:
                self.add(await self.collect())
            except (OSError, RuntimeFailure) as e:
                log.warning("resource metrics sample failed node=%s error=%s", self.node_name, e)
            await asyncio.sleep(self.window)

    # -- the MetricsSource Protocol ----------------------------------------------------

    def pod_usage(self, pod: Obj) -> dict[str, Usage] | None:
        if len(self.samples) < 2:
            return None
        uid = (pod.get("metadata") or {}).get("uid", "")
        before, after = self.samples
        now = after.by_uid().get(uid)
        if not now:
            return None
        then = {c.container_id: c for c in before.by_uid().get(uid, [])}
        out: dict[str, Usage] = {}
        for c in now:
            prev = then.get(c.container_id)
            if prev is None:
                continue  # started after the older sample: no rate yet
            cpu = _rate(prev.cpu_ns, c.cpu_ns, c.timestamp - prev.timestamp)
            out[c.container] = (cpu, c.memory_working_set)
        return out or None

    def node_usage(self, node: Obj, pods: list[Obj]) -> Usage | None:
        if len(self.samples) < 2:
            return None
        before, after = self.samples
        cpu = _rate(before.node_cpu_ns, after.node_cpu_ns, after.timestamp - before.timestamp)
        return cpu, after.node_memory_working_set

    # -- /metrics/resource -----------------------------------------------------------

    async def handle_resource_metrics(self, request: web.Request) -> web.Response:
        """`GET /metrics/resource`: a fresh sample in the Prometheus text format."""
        try:
            sample = await self.collect()
        except (OSError, RuntimeFailure) as e:
            log.warning("resource metrics scrape failed error=%s", e)
            text = _HELP["resource_scrape_error"] + "resource_scrape_error 1\n"
        else:
            text = render_prometheus(sample)
        return web.Response(
            text=text,
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Prometheus-Format": "0.0.4"},
        )


_HELP = {
    name: f"# HELP {name} [STABLE] {text}\n# TYPE {name} {kind}\n"
    for name, kind, text in (
        (
            "container_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed by the container in core-seconds",
        ),
        (
            "container_memory_working_set_bytes",
            "gauge",
            "Current working set of the container in bytes",
        ),
        (
            "container_start_time_seconds",
            "gauge",
            "Start time of the container since unix epoch in seconds",
        ),
        (
            "node_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed by the node in core-seconds",
        ),
        ("node_memory_working_set_bytes", "gauge", "Current working set of the node in bytes"),
        (
            "pod_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed by the pod in core-seconds",
        ),
        ("pod_memory_working_set_bytes", "gauge", "Current working set of the pod in bytes"),
        (
            "resource_scrape_error",
            "gauge",
            "1 if there was an error while getting container metrics, 0 otherwise",
        ),
    )
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**values: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in values.items()) + "}"


def render_prometheus(sample: Sample) -> str:
    """The kubelet's `/metrics/resource` body for `sample`."""
    ms = lambda t: str(int(t * 1000))  # noqa: E731 - a one-line formatter
    lines: dict[str, list[str]] = {name: [] for name in _HELP}
    pods: dict[tuple[str, str], list[ContainerSample]] = {}
    for c in sorted(sample.containers, key=lambda c: (c.namespace, c.pod, c.container)):
        labels = _labels(container=c.container, namespace=c.namespace, pod=c.pod)
        lines["container_cpu_usage_seconds_total"].append(
            f"container_cpu_usage_seconds_total{labels} {c.cpu_ns / 1e9:.9f} {ms(c.timestamp)}"
        )
        lines["container_memory_working_set_bytes"].append(
            f"container_memory_working_set_bytes{labels} {c.memory_working_set} {ms(c.timestamp)}"
        )
        lines["container_start_time_seconds"].append(
            f"container_start_time_seconds{labels} {c.started_at:.3f} {ms(c.started_at)}"
        )
        pods.setdefault((c.namespace, c.pod), []).append(c)
    for (namespace, pod), containers in pods.items():
        labels = _labels(namespace=namespace, pod=pod)
        stamp = ms(max(c.timestamp for c in containers))
        cpu = sum(c.cpu_ns for c in containers) / 1e9
        memory = sum(c.memory_working_set for c in containers)
        lines["pod_cpu_usage_seconds_total"].append(
            f"pod_cpu_usage_seconds_total{labels} {cpu:.9f} {stamp}"
        )
        lines["pod_memory_working_set_bytes"].append(
            f"pod_memory_working_set_bytes{labels} {memory} {stamp}"
        )
    stamp = ms(sample.timestamp)
    lines["node_cpu_usage_seconds_total"].append(
        f"node_cpu_usage_seconds_total {sample.node_cpu_ns / 1e9:.9f} {stamp}"
    )
    lines["node_memory_working_set_bytes"].append(
        f"node_memory_working_set_bytes {sample.node_memory_working_set} {stamp}"
    )
    lines["resource_scrape_error"].append(f"resource_scrape_error {1 if sample.errors else 0}")
    out = []
    for name, rows in lines.items():
        if rows:
            out.append(_HELP[name] + "".join(r + "\n" for r in rows))
    return "".join(out)

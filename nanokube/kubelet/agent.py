"""The node agent: one machine's kubelet, wired from its parts.

`NodeAgent(options, client)` holds the parts; `run(stop)` starts them in the
order they depend on each other, and stops them when `stop` is set:

1. the Node (`node.NodeStatusManager`): registered at once with the machine's
   capacity, Ready False until the rest is up; Lease and status loops start;
2. the image store (`DATA_DIR/agent/images`, archives dropped there are
   imported at start, as k3s's `agent/images`) behind `agent_images.StoreImages`;
3. the node's `spec.podCIDR` from node IPAM (waited for), which the CNI
   bridge's host-local IPAM hands out pod IPs from;
4. the OCI runtime (runc) on that network; `runtime.recover()` re-adopts what
   a previous agent left running (done by the kubelet's start);
5. the kubelet core (`kubelet.Kubelet`: pod workers, status manager, probes)
   with the volume manager (`volumes`, behind `PodVolumes`); then pod
   directories no bound pod owns are removed (a crash's leftovers);
6. the streaming server (logs, exec, port-forward; `agent_streaming`) on
   `kubelet_port` with the node's serving certificate, which also serves the
   kubelet's `GET /metrics/resource` (`metrics`);
7. loops: resource metrics sampling, configMap/secret volume refresh, and
   removal of local-path directories (`DATA_DIR/storage`) whose
   PersistentVolume is gone (`volumes_storage`, every `storage_cleanup_seconds`).

The agent is Ready once the kubelet has started. Stopping stops the agent
only: containers keep running for the next agent to re-adopt, as upstream.

The same object serves both deployments: in `nanokube server` (in-process
client; `agent.metrics` is added to the API server's metrics sources for this
node) and in `nanokube agent` (HTTPS client with the node's certificate).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from nanokube.api import errors
from nanokube.client.events import EventRecorder
from nanokube.client.interface import Client
from nanokube.kubelet import node as nodemod
from nanokube.kubelet import volumes_storage
from nanokube.kubelet.agent_images import StoreImages
from nanokube.kubelet.agent_streaming import RuntimeStreaming
from nanokube.kubelet.metrics import DEFAULT_WINDOW, ResourceMetrics
from nanokube.kubelet.volumes import VolumeManager

log = logging.getLogger(__name__)

Obj = dict[str, Any]

RESOURCE_METRICS_PATH = "/metrics/resource"


class AgentError(Exception):
    """The agent cannot run on this machine; the message says what is missing."""


@dataclass
class AgentOptions:
    """How one node agent runs; `nanokube agent`'s and `nanokube server`'s flags map here."""

    node_name: str
    data_dir: Path = Path("/var/lib/nanokube")
    node_ip: str = ""
    """InternalIP; empty: the address this machine reaches `server_url` from."""
    server_url: str = ""
    kubelet_port: int = 10250
    bind_address: str = "0.0.0.0"
    serving_cert: str = ""
    serving_key: str = ""
    client_ca: str = ""
    """The streaming server's TLS (the node's serving certificate, and the CA whose
    client certificates it accepts); without them it is not started."""
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[Obj] = field(default_factory=list)
    cluster_dns: list[str] = field(default_factory=list)
    """Cluster DNS server IPs for pods' resolv.conf; empty: the node's resolv.conf."""
    cluster_domain: str = "cluster.local"
    bridge: str = "nk0"
    state_dir: Path = Path("/run/nanokube")
    log_dir: Path = Path("/var/log/pods")
    cgroup_root: str = "/nanokube"
    insecure_registries: list[str] = field(default_factory=list)
    runtime_version: str = ""
    """``runc://<version>``; read from ``runc --version`` when empty."""
    metrics_window: float = DEFAULT_WINDOW
    volume_refresh_seconds: float = 60.0
    status_seconds: float = 10.0
    lease_seconds: float = 10.0
    storage_cleanup_seconds: float = 300.0

    @property
    def agent_dir(self) -> Path:
        return self.data_dir / "agent"


def missing_requirements() -> str | None:
    """Why real pods cannot run here, or None."""
    if os.geteuid() != 0:
        return "the node agent runs containers and needs root"
    if shutil.which("runc") is None:
        return "runc is not installed (apt-get install runc)"
    if not any(os.path.exists(f"{d}/bridge") for d in ("/usr/lib/cni", "/opt/cni/bin")):
        return "CNI plugins are missing (apt-get install containernetworking-plugins)"
    if not os.path.isdir("/sys/fs/cgroup/memory") or not os.path.isdir("/sys/fs/cgroup/cpuacct"):
        return "cgroup v1 memory and cpuacct controllers are required under /sys/fs/cgroup"
    return None


async def runc_version(runc: str = "runc") -> str:
    """`runc://1.1.5` from `runc --version`'s first line."""
    try:
        proc = await asyncio.create_subprocess_exec(
            runc, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        out, _ = await proc.communicate()
    except OSError:
        return "runc://unknown"
    words = out.decode(errors="replace").split()
    version = words[2] if len(words) > 2 and words[:2] == ["runc", "version"] else "unknown"
    return f"runc://{version}"


class PodVolumes:
    """The volume manager as the kubelet core's `services.VolumeManager` Protocol.

    Besides the volumes, setup prepares each container's `subPath` and
    `subPathExpr` targets (created, and refused when they leave the volume),
    because runc bind-mounts only paths that exist.
    """

    def __init__(self, manager: VolumeManager) -> None:
        self.manager = manager

    async def setup(self, pod: Obj) -> dict[str, str]:
        volumes = await self.manager.setup(pod)
        spec = pod.get("spec") or {}
        for container in [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]:
            self.manager.mounts(pod, container, volumes)
        return {name: v.host_path for name, v in volumes.items()}

    async def teardown(self, pod: Obj) -> None:
        uid = (pod.get("metadata") or {}).get("uid", "")
        if uid:
            self.manager.teardown(uid)


class NodeAgent:
    """One node's kubelet and the parts around it; see the module docstring."""

    def __init__(self, options: AgentOptions, client: Client) -> None:
        self.options = o = options
        self.client = client
        self.events = EventRecorder(client, "kubelet", o.node_name)
        self.node = nodemod.NodeStatusManager(
            client,
            nodemod.NodeConfig(
                name=o.node_name,
                data_dir=o.data_dir,
                internal_ip=o.node_ip or nodemod.node_machine.internal_ip(o.server_url),
                kubelet_port=o.kubelet_port,
                runtime_version=o.runtime_version or "runc://unknown",
                labels={**nodemod.default_labels(o.node_name), **o.labels},
                taints=list(o.taints),
                status_seconds=o.status_seconds,
                lease_seconds=o.lease_seconds,
            ),
            recorder=self.events,
            readiness=[self._kubelet_ready],
            images=self._node_images,
        )
        # Resource figures; a MetricsSource for the in-process API server.
        self.metrics = ResourceMetrics(None, o.node_name, window=o.metrics_window)
        self.volumes = VolumeManager(
            client,
            o.agent_dir / "pods",
            allocatable=self.node.allocatable,
            refresh_seconds=o.volume_refresh_seconds,
        )
        self.images: StoreImages | None = None
        self.kubelet: Any = None  # kubelet.Kubelet once started
        self.runtime: Any = None  # the OCIRuntime once the podCIDR is known
        self.ready = asyncio.Event()

    def _kubelet_ready(self) -> str | None:
        return None if self.ready.is_set() else "container runtime is starting"

    def _node_images(self) -> list[Obj]:
        return self.images.node_images() if self.images is not None else []

    async def run(self, stop: asyncio.Event) -> None:
        """Run the node until `stop` is set; raises `AgentError` if it cannot start."""
        problem = missing_requirements()
        if problem:
            raise AgentError(problem)
        from nanokube.runtime.images import ImageStore

        o = self.options
        o.agent_dir.mkdir(parents=True, exist_ok=True)
        if not o.runtime_version:
            self.node.config.runtime_version = await runc_version()
        store = ImageStore(o.agent_dir / "images", o.insecure_registries)
        tasks: list[asyncio.Task[Any]] = []
        streaming: web.AppRunner | None = None
        try:
            await store.import_dir()
            self.images = StoreImages(store)
            tasks.append(asyncio.create_task(self.node.run(), name="node-status"))
            cidr = await _until(stop, self.node.wait_for_pod_cidr())
            if cidr is None:
                return
            log.info("pod CIDR assigned node=%s cidr=%s", o.node_name, cidr)
            await self._start_kubelet(cidr)
            streaming = await self._start_streaming()
            tasks.append(asyncio.create_task(self.metrics.run(), name="resource-metrics"))
            tasks.append(
                asyncio.create_task(
                    self.volumes.run_refresh(self.kubelet.informer.list), name="volume-refresh"
                )
            )
            tasks.append(asyncio.create_task(self._clean_storage(), name="storage-cleanup"))
            self.ready.set()
            await self.node.post_status(force=True)
            log.info("node agent ready node=%s", o.node_name)
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.kubelet is not None:
                await self.kubelet.stop()
            if streaming is not None:
                await streaming.cleanup()
            await store.close()
            await self.events.close()

    async def _clean_storage(self) -> None:
        while True:
            await asyncio.sleep(self.options.storage_cleanup_seconds)
            try:
                await volumes_storage.cleanup_storage(
                    self.client, self.options.data_dir / "storage"
                )
            except (errors.StatusError, OSError) as e:
                log.warning("storage clean-up failed error=%s", e)

    async def _start_kubelet(self, cidr: str) -> None:
        from nanokube.kubelet.kubelet import Kubelet, KubeletConfig
        from nanokube.network.cni import CNI, NetworkConfig
        from nanokube.runtime.oci.runtime import OCIRuntime, Paths

        o = self.options
        network = CNI(
            NetworkConfig(
                subnet=cidr,
                bridge=o.bridge,
                conf_dir=str(o.agent_dir / "etc" / "cni"),
                data_dir=str(o.agent_dir / "cni"),
            )
        )
        network.write_conflist()
        self.runtime = OCIRuntime(
            network,
            Paths(
                state_dir=str(o.state_dir),
                data_dir=str(o.agent_dir),
                log_dir=str(o.log_dir),
                cgroup_root=o.cgroup_root,
            ),
        )
        self.metrics.runtime = self.runtime
        assert self.images is not None
        self.kubelet = Kubelet(
            self.client,
            self.runtime,
            self.images,
            PodVolumes(self.volumes),
            KubeletConfig(
                node_name=o.node_name,
                host_ip=self.node.internal_ip,
                cluster_dns=list(o.cluster_dns),
                cluster_domain=o.cluster_domain,
                node_allocatable=self.node.allocatable(),
            ),
            events=self.events,
        )
        await self.kubelet.start()
        bound = [p["metadata"]["uid"] for p in self.kubelet.informer.list()]
        removed = self.volumes.cleanup_orphans(bound)
        if removed:
            log.info("removed orphaned pod directories count=%d", len(removed))

    async def _start_streaming(self) -> web.AppRunner | None:
        from nanokube.kubelet.streaming import server as streaming

        o = self.options
        if not (o.serving_cert and o.serving_key and o.client_ca):
            log.warning(
                "no serving certificate: logs, exec and metrics are not served node=%s", o.node_name
            )
            return None
        app = streaming.build_app(RuntimeStreaming(self.runtime))
        app.router.add_get(RESOURCE_METRICS_PATH, self.metrics.handle_resource_metrics)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, handler_cancellation=True
        )
        await runner.setup()
        ctx = streaming.ssl_context(o.serving_cert, o.serving_key, o.client_ca)
        try:
            await web.TCPSite(runner, o.bind_address, o.kubelet_port, ssl_context=ctx).start()
        except OSError:
            await runner.cleanup()
            raise
        log.info("kubelet server listening address=%s port=%d", o.bind_address, o.kubelet_port)
        return runner


async def _until(stop: asyncio.Event, work: Any) -> Any:
    """`await work`, or None as soon as `stop` is set."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


async def run_agent(
    options: AgentOptions, client: Client, stop: asyncio.Event, agent: NodeAgent | None = None
) -> NodeAgent:
    """Run a node agent until `stop` is set (the CLI's entry point); returns it.

    Pass `agent` to keep a handle on it before it runs (its `metrics` for the
    in-process API server, its `ready` event).
    """
    agent = agent or NodeAgent(options, client)
    await agent.run(stop)
    return agent

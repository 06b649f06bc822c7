"""The container runtime contract the kubelet drives: pod sandboxes and their containers.

The shape follows the Kubernetes CRI (``RunPodSandbox``, ``CreateContainer``, ...) cut
down to what nanokube's kubelet uses, expressed as plain dataclasses and one `Runtime`
Protocol so that the ``oci`` (runc) and ``simulated`` backends are interchangeable.

Division of labour with the kubelet: the kubelet turns a Pod spec into these configs
(quantities parsed, volumes prepared as host directories, image resolved to layer
directories by the image store); a runtime only runs what it is told. The helpers at
the bottom hold the few rules that are Kubernetes semantics rather than runtime
mechanics (command/args over entrypoint/cmd, env merging, CPU conversion), so every
backend applies them the same way.

Times are Unix epoch seconds (float); ``None`` means "not yet".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

SandboxState = Literal["ready", "notready"]
ContainerState = Literal["created", "running", "exited", "unknown"]

OutputSink = Callable[[bytes], Awaitable[None]]
"""Receives one chunk of an exec'd process's output (stdout or stderr)."""


@dataclass
class PortMapping:
    """A ``hostPort`` of the pod: traffic to host_ip:host_port goes to the pod's port."""

    container_port: int
    host_port: int
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    host_ip: str = ""


@dataclass
class DNSConfig:
    """The pod's ``resolv.conf``; the kubelet computes it from ``dnsPolicy``/``dnsConfig``."""

    nameservers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


@dataclass
class SandboxConfig:
    """What a pod's shared environment needs: identity, namespaces, network, DNS."""

    uid: str
    name: str
    namespace: str
    hostname: str = ""
    """Defaults to the pod name (truncated to 63 characters, as the kubelet does)."""
    host_network: bool = False
    port_mappings: list[PortMapping] = field(default_factory=list)
    dns: DNSConfig | None = None
    """``None`` copies the host's ``/etc/resolv.conf`` (``dnsPolicy: Default``)."""
    host_aliases: dict[str, list[str]] = field(default_factory=dict)
    """Extra ``/etc/hosts`` entries: IP -> hostnames (``spec.hostAliases``)."""
    cgroup_parent: str = ""
    """Absolute cgroup path of the pod; defaults to ``/nanokube/pod<UID>``."""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    attempt: int = 0


@dataclass
class SandboxStatus:
    id: str
    config: SandboxConfig
    state: SandboxState
    created_at: float
    ip: str = ""
    """The pod IP; empty for ``hostNetwork`` sandboxes (their IP is the node's)."""
    namespaces: dict[str, str] = field(default_factory=dict)
    """Namespace kind (``net``, ``ipc``, ``uts``) -> the path pinning it."""
    cgroup_parent: str = ""


@dataclass
class ImageConfig:
    """The parts of an OCI image config a container run needs."""

    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""


@dataclass
class Mount:
    """A host directory or file (an already prepared volume) bound into the container."""

    host_path: str
    container_path: str
    readonly: bool = False
    propagation: Literal["private", "rslave", "rshared"] = "private"


@dataclass
class Resources:
    """cgroup v1 limits; build them with `resources_from_k8s`."""

    cpu_shares: int | None = None
    cpu_quota: int | None = None
    """Microseconds of CPU per `cpu_period`."""
    cpu_period: int = 100_000
    memory_limit: int | None = None
    """Bytes; swap is limited to the same value, so the container cannot swap."""
    pids_limit: int | None = None


@dataclass
class SecurityContext:
    run_as_user: int | None = None
    run_as_group: int | None = None
    supplemental_groups: list[int] = field(default_factory=list)
    read_only_root_filesystem: bool = False
    privileged: bool = False
    capabilities_add: list[str] = field(default_factory=list)
    """Names as in Kubernetes (``NET_ADMIN``) or with the ``CAP_`` prefix; ``ALL``."""
    capabilities_drop: list[str] = field(default_factory=list)
    no_new_privs: bool = False
    """``allowPrivilegeEscalation: false``."""
    seccomp: Literal["Unconfined", "RuntimeDefault"] = "Unconfined"


@dataclass
class ContainerConfig:
    name: str
    layers: list[str]
    """Image layer directories, bottom layer first (OCI manifest order)."""
    command: list[str]
    """The final argv, see `resolve_command`."""
    image: str = ""
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = ""
    user: str = ""
    """The image's ``USER`` (``name[:group]`` or numeric), used unless securityContext
    sets runAsUser/runAsGroup; names are looked up in the container's ``/etc/passwd``."""
    mounts: list[Mount] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    security: SecurityContext = field(default_factory=SecurityContext)
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    """Close the container's stdin when the first attach session that wrote to it ends."""
    attempt: int = 0
    """The restart count; the log file is ``<attempt>.log``."""
    log_path: str = ""
    """Defaults to ``/var/log/pods/NS_POD_UID/NAME/<attempt>.log`` under the log root."""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class ContainerStatus:
    id: str
    sandbox_id: str
    name: str
    state: ContainerState
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    reason: str = ""
    """``OOMKilled``, ``Completed``, ``Error`` once exited; ``ContainerCannotRun``."""
    message: str = ""
    pid: int = 0
    log_path: str = ""
    image: str = ""
    attempt: int = 0


@dataclass
class ContainerStats:
    timestamp: float
    cpu_usage_ns: int
    memory_usage_bytes: int
    memory_working_set_bytes: int
    """Usage minus inactive file pages: what the kubelet evicts and ``kubectl top`` shows."""


@dataclass
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


class Runtime(Protocol):
    """A node's container runtime. All methods are coroutines and idempotent where the
    CRI says so: stopping or removing something already gone succeeds."""

    async def recover(self) -> None:
        """Re-adopt what a previous agent left running and clean up half-done leftovers
        (network of vanished sandboxes, unmounted rootfs, IP reservations)."""

    async def create_sandbox(self, config: SandboxConfig) -> SandboxStatus: ...

    async def stop_sandbox(self, sandbox_id: str) -> None:
        """Stop every container of the sandbox and release its network (pod IP)."""

    async def remove_sandbox(self, sandbox_id: str) -> None: ...

    async def sandbox_status(self, sandbox_id: str) -> SandboxStatus: ...

    async def list_sandboxes(self) -> list[SandboxStatus]: ...

    async def create_container(self, sandbox_id: str, config: ContainerConfig) -> str: ...

    async def start_container(self, container_id: str) -> None: ...

    async def stop_container(self, container_id: str, timeout: float) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds; returns once it has exited."""

    async def remove_container(self, container_id: str) -> None: ...

    async def container_status(self, container_id: str) -> ContainerStatus: ...

    async def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]: ...

    async def exec(
        self,
        container_id: str,
        cmd: list[str],
        *,
        tty: bool = False,
        stdin: AsyncIterator[bytes] | None = None,
        stdout: OutputSink | None = None,
        stderr: OutputSink | None = None,
        resize: AsyncIterator[tuple[int, int]] | None = None,
    ) -> int:
        """Run `cmd` in the container, streaming its I/O; returns its exit code.
        `resize` yields (width, height) terminal sizes, applied when `tty`."""

    async def attach(
        self,
        container_id: str,
        *,
        stdin: AsyncIterator[bytes] | None = None,
        stdout: OutputSink | None = None,
        stderr: OutputSink | None = None,
        resize: AsyncIterator[tuple[int, int]] | None = None,
    ) -> None:
        """Stream a running container's output from now on and feed its stdin (when its
        config has `stdin`); returns when the container's output ends or the attacher's
        stdin and output are done. A tty container's output is all on `stdout`."""

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> ExecResult:
        """Run `cmd` and collect its output (exec probes); exit code -1 on timeout."""

    async def stats(self, container_id: str) -> ContainerStats: ...


class NetworkAttachment(Protocol):
    ips: list[str]


class PodNetwork(Protocol):
    """The pod network a runtime attaches sandboxes to (`nanokube.network.cni.CNI`).

    A protocol rather than an import: the runtime layer sits above the network layer,
    so the agent wires the two together."""

    async def add(
        self,
        container_id: str,
        netns: str,
        port_mappings: list[dict[str, Any]] | None = None,
        args: dict[str, str] | None = None,
    ) -> NetworkAttachment: ...

    async def delete(
        self,
        container_id: str,
        netns: str | None,
        port_mappings: list[dict[str, Any]] | None = None,
        args: dict[str, str] | None = None,
    ) -> None: ...

    def leftover_reservations(self) -> dict[str, str]: ...

    def cached_ids(self) -> list[str]: ...


class RuntimeFailure(Exception):
    """Base of runtime failures; the message is meant for a pod event."""


class NotFound(RuntimeFailure):
    """No sandbox or container with that id."""


def resolve_command(image: ImageConfig, command: list[str], args: list[str]) -> list[str]:
    """Kubernetes' rule: ``command`` replaces the entrypoint, ``args`` replaces cmd, and
    giving ``command`` alone drops the image's cmd."""
    if command:
        return command + args
    if args:
        return image.entrypoint + args
    return image.entrypoint + image.cmd


def merge_env(image: ImageConfig, env: dict[str, str]) -> dict[str, str]:
    """The image's ``K=V`` entries overridden by the container's."""
    merged: dict[str, str] = {}
    for item in image.env:
        key, _, value = item.partition("=")
        merged[key] = value
    merged.update(env)
    return merged


def resources_from_k8s(
    cpu_request_milli: int | None,
    cpu_limit_milli: int | None,
    memory_limit: int | None,
    period: int = 100_000,
) -> Resources:
    """The kubelet's conversions: shares = milli*1024/1000 (minimum 2, and 2 when nothing
    is requested, as for BestEffort pods), quota = milli*period/1000 (minimum 1 ms)."""
    request = cpu_request_milli if cpu_request_milli is not None else cpu_limit_milli
    shares = max(2, (request or 0) * 1024 // 1000)
    quota = None
    if cpu_limit_milli:
        quota = max(1000, cpu_limit_milli * period // 1000)
    return Resources(
        cpu_shares=shares, cpu_quota=quota, cpu_period=period, memory_limit=memory_limit
    )

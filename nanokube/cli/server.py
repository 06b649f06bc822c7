"""`nanokube server`: the wiring of one control-plane process.

Start-up, in order:

1. certificates under `DATA_DIR/tls/` (created once, reused after: `certs`)
2. the admin kubeconfig, at `--write-kubeconfig` and `DATA_DIR/kubeconfig.yaml`
3. the store (`DATA_DIR/db/state.db` for sqlite, or memory)
4. the API server, until `stop` is set

and on the way out the store is closed. Everything runs in one asyncio loop
(uvloop). Heavy modules (aiohttp, cryptography, the store backends) are
imported here, inside functions, so `nanokube kubectl` and `--help` stay
instant and the server's start-up pays only for what it uses.

Signals: the first SIGTERM or SIGINT sets the stop event and the server shuts
down cleanly (exit 0); a second one during shutdown exits at once (exit 1).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nanokube.cli import kubeconfig

if TYPE_CHECKING:
    from nanokube.cli.certs import ClusterTLS
    from nanokube.controllers.manager import ControllerManagerOptions
    from nanokube.storage.store import Store

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path("/var/lib/nanokube")
DATASTORES = ("sqlite", "memory")


@dataclass
class ServerOptions:
    """The flags of `nanokube server` (see `main.py` for their help texts)."""

    data_dir: Path = DEFAULT_DATA_DIR
    bind_address: str = "127.0.0.1"
    port: int = 6443
    write_kubeconfig: Path = kubeconfig.DEFAULT_PATH
    disable_agent: bool = False
    datastore: str = "sqlite"
    simulated_nodes: int = 0
    disable_scheduler: bool = False
    disable_controller_manager: bool = False
    token: str = ""
    node_name: str = ""
    cluster_cidr: str = "10.42.0.0/16"
    service_cidr: str = "10.43.0.0/16"
    node_monitor_grace_period: float = 40.0
    # The in-process agent's place on the machine; other values let a second agent
    # (a test's, a demo's) run beside the machine's own without touching its pods.
    kubelet_port: int = 10250
    cni_bridge: str = "nk0"
    state_dir: Path = Path("/run/nanokube")
    pod_log_dir: Path = Path("/var/log/pods")
    cgroup_root: str = "/nanokube"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "db" / "state.db"

    @property
    def kubeconfig_paths(self) -> list[Path]:
        """Where the admin kubeconfig goes: the flag's path, and always the data dir."""
        own = self.data_dir / "kubeconfig.yaml"
        paths = [Path(self.write_kubeconfig)] if self.write_kubeconfig else []
        if own.resolve() not in [p.resolve() for p in paths]:
            paths.append(own)
        return paths

    @property
    def url(self) -> str:
        return kubeconfig.server_url(self.bind_address, self.port)


def prepare(options: ServerOptions) -> ClusterTLS:
    """Create (or reuse) the certificates and write the admin kubeconfig."""
    from nanokube.cli import certs

    options.data_dir.mkdir(parents=True, exist_ok=True)
    tls = certs.ensure_cluster_tls(options.tls_dir, certs.serving_sans(options.bind_address))
    admin_cert, admin_key = tls.admin
    kubeconfig.write(
        options.kubeconfig_paths,
        options.url,
        tls.server_ca[0].read_bytes(),
        admin_cert.read_bytes(),
        admin_key.read_bytes(),
    )
    return tls


def open_store(options: ServerOptions) -> Store:
    """The backend `--datastore` names."""
    if options.datastore == "memory":
        from nanokube.storage.memory import MemoryStore

        return MemoryStore()
    if options.datastore == "sqlite":
        from nanokube.storage.sqlite import SqliteStore

        options.db_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return SqliteStore(str(options.db_path))
    raise ValueError(f"unknown datastore {options.datastore!r} (one of {', '.join(DATASTORES)})")


async def run_server(
    options: ServerOptions, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """Run the control plane until `stop` is set; `ready` is set once the API serves."""
    from nanokube.apiserver import patching, tokens, tokens_nodecert
    from nanokube.apiserver.server import APIServerConfig, start
    from nanokube.cli import controlplane
    from nanokube.client.inprocess import InProcessClient

    tls = prepare(options)
    token = tokens.ensure_token_file(options.data_dir, tls.server_ca[0].read_bytes(), options.token)
    store = open_store(options)
    try:
        config = APIServerConfig(
            store=store,
            bind_address=options.bind_address,
            port=options.port,
            cert_file=str(tls.serving[0]),
            key_file=str(tls.serving[1]),
            client_ca_file=str(tls.client_ca[0]),
            service_cidr=options.service_cidr,
            kubelet_client_cert_file=str(tls.kubelet_client[0]),
            kubelet_client_key_file=str(tls.kubelet_client[1]),
            kubelet_ca_file=str(tls.server_ca[0]),
            token=token,
            node_certs=tokens_nodecert.NodeCertIssuer(
                tls.server_ca, tls.client_ca, tokens.TokenAuthenticator(token)
            ),
        )
        api, runner = await start(config)
        client = InProcessClient(api.resources, patching.patch, api.subresource_creators())
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(
                controlplane.run_control_plane(
                    client,
                    controlplane.Election(),
                    controllers=not options.disable_controller_manager,
                    scheduler=not options.disable_scheduler,
                    controller_options=controller_options(options, api.metrics_api),
                ),
                name="control-plane",
            )
        ]
        if options.simulated_nodes:
            from nanokube.apiserver.metrics import PodUsageSource
            from nanokube.kubelet.simulated import (
                SimulatedNodeOptions,
                run_simulated_nodes,
                usage,
            )

            # Simulated pods report the usage their annotations declare.
            api.metrics_sources.add(PodUsageSource(usage))

            tasks.append(
                asyncio.create_task(
                    run_simulated_nodes(
                        client,
                        SimulatedNodeOptions(
                            count=options.simulated_nodes,
                            # Renew well within the grace period, as upstream's quarter.
                            renew_interval=min(10.0, options.node_monitor_grace_period / 4),
                        ),
                        stop,
                    ),
                    name="simulated-nodes",
                )
            )
        if not options.disable_agent:
            agent_task = start_local_agent(options, tls, client, api, stop)
            if agent_task is not None:
                tasks.append(agent_task)
        # Tens of thousands of long-lived object dicts make Python's default
        # cycle collector run full passes of ~1 s under load: collect young
        # objects less often, and leave what start-up loaded out of it.
        gc.set_threshold(50_000, 20, 100)
        gc.freeze()
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await api.cache.stop()
            await runner.cleanup()
    finally:
        await store.close()


def start_local_agent(
    options: ServerOptions, tls: ClusterTLS, client: Any, api: Any, stop: asyncio.Event
) -> asyncio.Task[Any] | None:
    """The node agent of this machine, in this process (as k3s's server runs its agent).

    Without what real pods need (root, runc, CNI plugins, cgroup v1) the server
    runs without it and says why.
    """
    import socket

    from nanokube.cli import agent as agent_cli
    from nanokube.kubelet.agent import AgentOptions, NodeAgent, missing_requirements

    missing = missing_requirements()
    if missing:
        log.warning("running without a node agent: %s (use --disable-agent to silence)", missing)
        return None
    name = options.node_name or socket.gethostname().lower()
    ip = "127.0.0.1" if options.bind_address in ("127.0.0.1", "localhost") else options.bind_address
    creds = agent_cli.local_node_credentials(
        tls, name, [ip, name], options.data_dir / "agent" / "tls"
    )
    agent = NodeAgent(
        AgentOptions(
            node_name=name,
            data_dir=options.data_dir,
            node_ip=ip,
            kubelet_port=options.kubelet_port,
            serving_cert=str(creds.serving_cert),
            serving_key=str(creds.serving_key),
            client_ca=str(creds.client_ca),
            labels={"node-role.kubernetes.io/control-plane": "true"},
            bridge=options.cni_bridge,
            state_dir=options.state_dir,
            log_dir=options.pod_log_dir,
            cgroup_root=options.cgroup_root,
        ),
        client,
    )
    api.metrics_sources.add(agent.metrics, [name])
    return asyncio.create_task(agent.run(stop), name="node-agent")


def controller_options(options: ServerOptions, metrics: Any = None) -> ControllerManagerOptions:
    from nanokube.controllers.manager import ControllerManagerOptions

    return ControllerManagerOptions(
        cluster_cidr=options.cluster_cidr,
        node_monitor_grace_period=options.node_monitor_grace_period,
        metrics=metrics,
        storage_dir=options.data_dir / "storage",
    )


def serve(options: ServerOptions) -> int:
    """Run `nanokube server` in the foreground under uvloop; the process exit code."""
    import uvloop

    return uvloop.run(_serve(options))


async def _serve(options: ServerOptions) -> int:
    started = time.perf_counter()
    stop = asyncio.Event()
    ready = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s during shutdown: exiting now", signal.Signals(signum).name)
            os._exit(1)
        log.info("%s received: shutting down", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    async def announce() -> None:
        await ready.wait()
        log.info(
            "nanokube server ready url=%s kubeconfig=%s datastore=%s startup=%.0fms",
            options.url,
            options.kubeconfig_paths[0],
            options.datastore,
            (time.perf_counter() - started) * 1000,
        )

    announcer = asyncio.create_task(announce())
    try:
        await run_server(options, stop, ready)
    except OSError as e:
        log.error("server failed: %s", e)
        return 1
    finally:
        announcer.cancel()
    log.info("nanokube server stopped")
    return 0

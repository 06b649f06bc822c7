"""`nanokube agent --server URL --token T`: a node agent that joins a cluster.

Start-up, in order:

1. the node's name (`--node-name`, else the hostname) and InternalIP
   (`--node-ip`, else the address this machine reaches the server from);
2. its certificates (`agent_join`): reused from `DATA_DIR/agent/tls/` while
   valid, else obtained with the join token (k3s's flow: CA checked against
   the token's hash, CSRs signed by the server), and the agent's kubeconfig
   `DATA_DIR/agent/kubelet.kubeconfig`;
3. the HTTPS client as `system:node:<name>` (x509), and the node agent
   (`nanokube.kubelet.agent`) until SIGTERM/SIGINT.

`nanokube server` runs the same agent in its own process; it signs the local
node's certificates directly with `local_node_credentials` (it holds the CAs).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nanokube.cli import agent_join

if TYPE_CHECKING:
    from nanokube.cli.certs import ClusterTLS
    from nanokube.kubelet.agent import AgentOptions, NodeAgent

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path("/var/lib/nanokube")
TOKEN_ENV = "NANOKUBE_TOKEN"


@dataclass
class AgentCommandOptions:
    """The flags of `nanokube agent` (see `main.py` for their help texts)."""

    server: str
    token: str = ""
    data_dir: Path = DEFAULT_DATA_DIR
    node_name: str = ""
    node_ip: str = ""
    kubelet_port: int = 10250
    node_labels: list[str] = field(default_factory=list)
    node_taints: list[str] = field(default_factory=list)
    cluster_dns: str = ""
    cluster_domain: str = "cluster.local"
    bridge: str = "nk0"
    state_dir: Path = Path("/run/nanokube")
    log_dir: Path = Path("/var/log/pods")
    cgroup_root: str = "/nanokube"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "agent" / "tls"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "agent" / "kubelet.kubeconfig"


def parse_labels(items: list[str]) -> dict[str, str]:
    """`k=v` flags (`--node-label`)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"invalid node label {item!r}: want key=value")
        out[key] = value
    return out


def parse_taints(items: list[str]) -> list[dict[str, str]]:
    """`key=value:Effect` or `key:Effect` flags (`--node-taint`, as k3s's)."""
    out = []
    for item in items:
        spec, sep, effect = item.rpartition(":")
        if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise ValueError(f"invalid node taint {item!r}: want key[=value]:Effect")
        key, _, value = spec.partition("=")
        taint = {"key": key, "effect": effect}
        if value:
            taint["value"] = value
        out.append(taint)
    return out


def agent_options(
    options: AgentCommandOptions, node_name: str, node_ip: str, creds: agent_join.NodeCredentials
) -> AgentOptions:
    from nanokube.kubelet.agent import AgentOptions

    return AgentOptions(
        node_name=node_name,
        data_dir=options.data_dir,
        node_ip=node_ip,
        server_url=options.server,
        kubelet_port=options.kubelet_port,
        serving_cert=str(creds.serving_cert),
        serving_key=str(creds.serving_key),
        client_ca=str(creds.client_ca),
        labels=parse_labels(options.node_labels),
        taints=parse_taints(options.node_taints),
        cluster_dns=[s for s in options.cluster_dns.split(",") if s],
        cluster_domain=options.cluster_domain,
        bridge=options.bridge,
        state_dir=options.state_dir,
        log_dir=options.log_dir,
        cgroup_root=options.cgroup_root,
    )


async def run(
    options: AgentCommandOptions, stop: asyncio.Event, agent: list[NodeAgent] | None = None
) -> None:
    """Join and run the agent until `stop` is set; `agent` receives the running agent."""
    from nanokube.client.http import HTTPClient
    from nanokube.kubelet import agent as kubelet_agent
    from nanokube.kubelet import node_machine

    node_name = (options.node_name or node_machine.hostname()).lower()
    node_ip = options.node_ip or node_machine.internal_ip(options.server)
    token = options.token or os.environ.get(TOKEN_ENV, "")
    creds = await agent_join.join(
        options.server, token, node_name, [node_ip, node_name], options.tls_dir
    )
    agent_join.write_kubeconfig(options.kubeconfig, options.server, creds)
    client = HTTPClient(
        options.server,
        ca_file=str(creds.server_ca),
        cert_file=str(creds.client_cert),
        key_file=str(creds.client_key),
    )
    try:
        node = kubelet_agent.NodeAgent(agent_options(options, node_name, node_ip, creds), client)
        if agent is not None:
            agent.append(node)
        await kubelet_agent.run_agent(node.options, client, stop, node)
    finally:
        await client.close()


def local_node_credentials(
    tls: ClusterTLS, node_name: str, addresses: list[str], tls_dir: Path
) -> agent_join.NodeCredentials:
    """The in-process agent's certificates, signed by the server's own CAs (no token)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from nanokube.apiserver.tokens_nodecert import NodeCertIssuer
    from nanokube.cli.files import write_private

    creds = agent_join.NodeCredentials(Path(tls_dir))
    if agent_join.credentials_valid(creds, node_name):
        return creds
    client_key = ec.generate_private_key(ec.SECP256R1())
    serving_key = ec.generate_private_key(ec.SECP256R1())
    issued = NodeCertIssuer(tls.server_ca, tls.client_ca).issue(
        node_name,
        agent_join.csr(client_key, f"system:node:{node_name}"),
        agent_join.csr(serving_key, node_name),
        [*addresses, "127.0.0.1", "localhost"],
    )
    creds.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(creds.client_key, agent_join.key_pem(client_key))
    write_private(creds.serving_key, agent_join.key_pem(serving_key))
    write_private(creds.client_cert, issued.client_certificate, mode=0o644)
    write_private(creds.serving_cert, issued.serving_certificate, mode=0o644)
    write_private(creds.server_ca, issued.server_ca, mode=0o644)
    write_private(creds.client_ca, issued.client_ca, mode=0o644)
    return creds


def serve(options: AgentCommandOptions) -> int:
    """Run `nanokube agent` in the foreground under uvloop; the process exit code."""
    import uvloop

    return uvloop.run(_serve(options))


async def _serve(options: AgentCommandOptions) -> int:
    from nanokube.kubelet.agent import AgentError

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s during shutdown: exiting now", signal.Signals(signum).name)
            os._exit(1)
        log.info(
            "%s received: stopping the agent (containers keep running)", signal.Signals(signum).name
        )
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await run(options, stop)
    except (agent_join.JoinError, AgentError, ValueError, OSError) as e:
        log.error("agent failed: %s", e)
        return 1
    log.info("nanokube agent stopped")
    return 0

"""The `nanokube` command: flags, logging, and dispatch to the subcommands.

- `nanokube server [flags]`: the control plane (see `server.py`); flags are
  named as k3s names them
- `nanokube kubectl ARGS...`: the real kubectl with the cluster's kubeconfig,
  through `exec`, so its exit code, signals and terminal are kubectl's own

This module imports only the standard library; each subcommand imports what
it needs when it runs, so `nanokube kubectl` adds nothing noticeable to
kubectl's own start-up.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from nanokube import __version__
from nanokube.cli import kubeconfig

log = logging.getLogger(__name__)

DEFAULT_KUBECTL = "/usr/bin/kubectl"
GLOBAL_KUBECONFIG = kubeconfig.DEFAULT_PATH
# Where a user without access to the global file keeps a copy (as k3s's ~/.kube/k3s.yaml).
HOME_KUBECONFIG = Path("~/.kube/nanokube.yaml")


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`nanokube`); returns the exit code (or execs kubectl)."""
    args = list(sys.argv[1:] if argv is None else argv)
    # kubectl's arguments, --help included, are kubectl's: argparse never sees them.
    if args and args[0] == "kubectl":
        return run_kubectl(args[1:])
    opts = build_parser().parse_args(args)
    setup_logging(opts.v)
    if opts.command == "server":
        from nanokube.cli import server

        return server.serve(
            server.ServerOptions(
                data_dir=opts.data_dir,
                bind_address=opts.bind_address,
                port=opts.https_listen_port,
                write_kubeconfig=opts.write_kubeconfig,
                disable_agent=opts.disable_agent,
                datastore=opts.datastore,
                simulated_nodes=opts.simulated_nodes,
                disable_scheduler=opts.disable_scheduler,
                disable_controller_manager=opts.disable_controller_manager,
                cluster_cidr=opts.cluster_cidr,
                service_cidr=opts.service_cidr,
                node_monitor_grace_period=opts.node_monitor_grace_period,
                token=opts.token,
                node_name=opts.node_name,
                kubelet_port=opts.kubelet_port,
                cni_bridge=opts.cni_bridge,
                state_dir=opts.state_dir,
                pod_log_dir=opts.pod_log_dir,
                cgroup_root=opts.cgroup_root,
            )
        )
    if opts.command == "images":
        from nanokube.cli import images as images_cli

        return images_cli.run(opts)
    if opts.command == "agent":
        from nanokube.cli import agent

        return agent.serve(
            agent.AgentCommandOptions(
                server=opts.server,
                token=opts.token or os.environ.get("NANOKUBE_TOKEN", ""),
                data_dir=opts.data_dir,
                node_name=opts.node_name,
                node_ip=opts.node_ip,
                kubelet_port=opts.kubelet_port,
                node_labels=opts.node_label,
                node_taints=opts.node_taint,
                cluster_dns=opts.cluster_dns,
            )
        )
    if opts.command in ("controller-manager", "scheduler"):
        from nanokube.cli import components

        return components.serve(opts.command, opts.kubeconfig)
    build_parser().print_help()
    return 2


def build_parser() -> argparse.ArgumentParser:
    from nanokube.cli.server import DATASTORES, DEFAULT_DATA_DIR

    parser = argparse.ArgumentParser(
        prog="nanokube", description="A Kubernetes-compatible container orchestrator."
    )
    parser.add_argument("--version", action="version", version=f"nanokube {__version__}")
    verbosity = argparse.ArgumentParser(add_help=False)
    verbosity.add_argument(
        "-v",
        "--v",
        type=int,
        default=0,
        metavar="N",
        help="log verbosity: 0 = info, 4 or more = debug (as kubectl's -v)",
    )
    parser.set_defaults(v=0)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    srv = sub.add_parser(
        "server",
        parents=[verbosity],
        help="run the control plane (API server) and write an admin kubeconfig",
        description="Run a nanokube control plane in the foreground.",
    )
    srv.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        metavar="DIR",
        help="state, certificates and database (default %(default)s)",
    )
    srv.add_argument(
        "--bind-address",
        default="127.0.0.1",
        metavar="ADDR",
        help="address the API server listens on (default %(default)s)",
    )
    srv.add_argument(
        "--https-listen-port",
        type=int,
        default=6443,
        metavar="PORT",
        help="HTTPS port of the API server (default %(default)s)",
    )
    srv.add_argument(
        "--write-kubeconfig",
        type=Path,
        default=GLOBAL_KUBECONFIG,
        metavar="PATH",
        help="write the admin kubeconfig here too (default %(default)s); "
        "it is always written to DATA_DIR/kubeconfig.yaml",
    )
    srv.add_argument(
        "--disable-agent", action="store_true", help="do not run a node agent in this process"
    )
    srv.add_argument(
        "--datastore",
        choices=DATASTORES,
        default="sqlite",
        help="where cluster state lives: sqlite (DATA_DIR/db/state.db) or memory "
        "(lost on exit) (default %(default)s)",
    )
    srv.add_argument(
        "--simulated-nodes",
        type=int,
        default=0,
        metavar="N",
        help="add N simulated nodes whose pods run no processes (default %(default)s)",
    )
    srv.add_argument(
        "--token",
        default="",
        metavar="TOKEN",
        help="the join token agents present (default: DATA_DIR/token, created once)",
    )
    srv.add_argument(
        "--node-name",
        default="",
        metavar="NAME",
        help="name of this machine's node, when the agent runs (default: the hostname)",
    )
    node = srv.add_argument_group(
        "node agent", "where this process's node agent runs (change them to run it beside another)"
    )
    node.add_argument(
        "--kubelet-port",
        type=int,
        default=10250,
        metavar="PORT",
        help="port of the agent's logs/exec/metrics server (default %(default)s)",
    )
    node.add_argument(
        "--cni-bridge", default="nk0", metavar="NAME", help="pods' bridge (default %(default)s)"
    )
    node.add_argument(
        "--state-dir",
        type=Path,
        default=Path("/run/nanokube"),
        metavar="DIR",
        help="containers' and sandboxes' runtime state (default %(default)s)",
    )
    node.add_argument(
        "--pod-log-dir",
        type=Path,
        default=Path("/var/log/pods"),
        metavar="DIR",
        help="containers' logs (default %(default)s)",
    )
    node.add_argument(
        "--cgroup-root",
        default="/nanokube",
        metavar="PATH",
        help="cgroup under which pods' cgroups go (default %(default)s)",
    )
    srv.add_argument(
        "--cluster-cidr",
        default="10.42.0.0/16",
        metavar="CIDR",
        help="pod network; each node gets a /24 of it (default %(default)s)",
    )
    srv.add_argument(
        "--service-cidr",
        default="10.43.0.0/16",
        metavar="CIDR",
        help="ClusterIPs of Services come from here (default %(default)s)",
    )
    srv.add_argument(
        "--node-monitor-grace-period",
        type=float,
        default=40.0,
        metavar="SECONDS",
        help="a node whose Lease is older than this is marked NotReady (default %(default)s)",
    )
    srv.add_argument(
        "--disable-scheduler",
        action="store_true",
        help="run no scheduler in this process (run `nanokube scheduler` elsewhere)",
    )
    srv.add_argument(
        "--disable-controller-manager",
        action="store_true",
        help="run no controllers in this process (run `nanokube controller-manager` elsewhere)",
    )
    for component, what in (
        ("controller-manager", "the controllers"),
        ("scheduler", "the scheduler"),
    ):
        comp = sub.add_parser(
            component,
            parents=[verbosity],
            help=f"run {what} against a server, under leader election",
            description=f"Run {what} against the server of a kubeconfig; of several copies, "
            "only the leader (a Lease in kube-system) acts.",
        )
        comp.add_argument(
            "--kubeconfig",
            type=Path,
            required=True,
            metavar="PATH",
            help="kubeconfig of the server to act on",
        )
    ag = sub.add_parser(
        "agent",
        parents=[verbosity],
        help="run a node agent that joins a cluster",
        description="Run a node agent (kubelet) that registers this machine as a node.",
    )
    ag.add_argument(
        "--server", required=True, metavar="URL", help="the API server, https://HOST:PORT"
    )
    ag.add_argument(
        "--token",
        default="",
        metavar="TOKEN",
        help="the cluster's join token (DATA_DIR/token on the server; or $NANOKUBE_TOKEN)",
    )
    ag.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        metavar="DIR",
        help="images, pod volumes and certificates (default %(default)s)",
    )
    ag.add_argument("--node-name", default="", metavar="NAME", help="default: the hostname")
    ag.add_argument("--node-ip", default="", metavar="IP", help="InternalIP of the node")
    ag.add_argument("--kubelet-port", type=int, default=10250, metavar="PORT")
    ag.add_argument("--node-label", action="append", default=[], metavar="KEY=VALUE")
    ag.add_argument("--node-taint", action="append", default=[], metavar="KEY=VALUE:EFFECT")
    ag.add_argument("--cluster-dns", default="", metavar="IP", help="DNS server of pods")
    from nanokube.cli import images as images_cli

    images_cli.add_parser(sub, [verbosity])
    sub.add_parser(
        "kubectl",
        help="run kubectl with the cluster's kubeconfig (arguments go to kubectl)",
        add_help=False,
    )
    return parser


def setup_logging(verbosity: int) -> None:
    """stdlib logging to stderr; `-v 4` and above turns on debug messages."""
    logging.basicConfig(
        level=logging.DEBUG if verbosity >= 4 else logging.INFO,
        format="%(asctime)s %(levelname).1s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def kubectl_environment(
    args: Sequence[str], environ: Mapping[str, str], home: Path | None = None
) -> dict[str, str]:
    """The environment for kubectl: KUBECONFIG chosen as `k3s kubectl` chooses it.

    An explicit `--kubeconfig` argument or a set KUBECONFIG wins; otherwise the
    global file if readable, else the one in the user's home, else the global
    path anyway (so kubectl's own error names it).
    """
    env = dict(environ)
    if env.get("KUBECONFIG") or any(
        a == "--kubeconfig" or a.startswith("--kubeconfig=") for a in args
    ):
        return env
    home_file = (home / ".kube" / "nanokube.yaml") if home else HOME_KUBECONFIG.expanduser()
    for candidate in (GLOBAL_KUBECONFIG, home_file):
        if os.access(candidate, os.R_OK):
            env["KUBECONFIG"] = str(candidate)
            return env
    env["KUBECONFIG"] = str(GLOBAL_KUBECONFIG)
    return env


def run_kubectl(args: Sequence[str]) -> int:
    """Replace this process with kubectl (`KUBECTL` env or /usr/bin/kubectl)."""
    kubectl = os.environ.get("KUBECTL") or DEFAULT_KUBECTL
    env = kubectl_environment(args, os.environ)
    try:
        os.execvpe(kubectl, [kubectl, *args], env)
    except OSError as e:
        print(f"nanokube: cannot run kubectl {kubectl!r}: {e}", file=sys.stderr)
        return 127

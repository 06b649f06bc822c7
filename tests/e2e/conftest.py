"""The e2e harness: one real `nanokube server` per test session, driven by the real kubectl.

The server runs as a subprocess (`python -m nanokube.cli server --disable-agent
--datastore sqlite`; without `--disable-agent` for `node_cluster`) on a free loopback port, with its data dir, kubeconfig,
log and kubectl's cache dir under a session tmp dir, so a run neither reads
nor touches `~/.kube` or `/etc/nanokube`. It counts as started once
`/readyz` answers 200 to the admin client certificate.

- `node_cluster` (session-scoped): a server WITH its node agent running real runc
  containers, beside (never over) the machine's own agent: its own node name,
  kubelet port, CNI bridge and pod CIDR, state and log dirs and cgroup root, and
  a busybox image (``busybox:latest``) dropped in `DATA_DIR/agent/images/` for the
  agent to import at start. Its teardown deletes every workload and pod through
  the API, waits for the containers to stop, and fails if any are left.
- `cluster` (session-scoped): a `Cluster`; tests call `cluster.kubectl(...)`
  and may `restart()` or `kill9()` it. Before each test that uses it, a
  server that a previous test killed is started again.
- A failing test's report carries the server log written during that test;
  a failing session prints the log's tail at the end; a server that does not
  exit 0 on SIGTERM fails the session teardown.
- Without /usr/bin/kubectl the tests that need `cluster` are skipped, saying so.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from support import free_port

KUBECTL = Path("/usr/bin/kubectl")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
KUBECTL_TIMEOUT = 120.0
LOG_TAIL_LINES = 200
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class KubectlError(subprocess.CalledProcessError):
    """A kubectl call that failed; its message shows what kubectl printed."""

    def __str__(self) -> str:
        return (
            f"{' '.join(map(str, self.cmd))} exited {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )


class Cluster:
    """A real nanokube server subprocess and a kubectl bound to it."""

    def __init__(
        self,
        root: Path,
        port: int,
        extra_args: tuple[str, ...] = (),
        with_agent: bool = False,
    ) -> None:
        self.root = root
        self.port = port
        self.extra_args = extra_args  # more `nanokube server` flags (e.g. simulated nodes)
        self.with_agent = with_agent  # run the server's node agent (real containers)
        self.data_dir = root / "data"
        self.kubeconfig = root / "kubeconfig.yaml"
        self.log_path = root / "server.log"
        self.url = f"https://127.0.0.1:{port}"
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._kubectl_env = {
            k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBECACHEDIR")
        }
        self._kubectl_env["KUBECACHEDIR"] = str(root / "kube-cache")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "nanokube.cli",
            "server",
            *(() if self.with_agent else ("--disable-agent",)),
            "--datastore",
            "sqlite",
            "--data-dir",
            str(self.data_dir),
            "--bind-address",
            "127.0.0.1",
            "--https-listen-port",
            str(self.port),
            "--write-kubeconfig",
            str(self.kubeconfig),
            *self.extra_args,
        ]

    def flag(self, name: str) -> str:
        """The value of `name` in the extra server flags (KeyError if not given)."""
        args = list(self.extra_args)
        if name not in args[:-1]:
            raise KeyError(name)
        return args[args.index(name) + 1]

    def start(self) -> None:
        """Start the server and wait until /readyz answers 200."""
        assert not self.running, "server already running"
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"=== harness: start #{self.starts} ===\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of pytest does not reach it before teardown
                preexec_fn=die_with_parent,
            )
        self._wait_ready()

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after STOP_TIMEOUT); the exit code, None if not running."""
        if not self.running or self._proc is None:
            return None
        self._proc.send_signal(signal.SIGTERM)
        try:
            return self._proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._note("server ignored SIGTERM; killing it")
            self._proc.kill()
            self._proc.wait()
            raise

    def kill9(self) -> None:
        """SIGKILL the server, as a crash or power cut of the process would."""
        if self.running and self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._note("killed with SIGKILL")

    def restart(self) -> None:
        """Stop the server cleanly (if running) and start it again on the same port and data."""
        code = self.stop()
        if code not in (0, None):
            raise AssertionError(f"server exited {code} on SIGTERM\n{self.log_tail()}")
        self.start()

    def ensure_running(self) -> None:
        if not self.running:
            self.start()

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float = KUBECTL_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """Run `/usr/bin/kubectl --kubeconfig=KUBECONFIG ARGS` (text output).

        `env` adds to the environment; with `check`, a non-zero exit raises
        KubectlError showing kubectl's output.
        """
        cmd = self.kubectl_argv(*args)
        done = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            env={**self._kubectl_env, **(env or {})},
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise KubectlError(done.returncode, cmd, done.stdout, done.stderr)
        return done

    def kubectl_argv(self, *args: str) -> list[str]:
        """kubectl's argv, for a test that runs it itself (a pty, a long-running follow)."""
        return [str(KUBECTL), f"--kubeconfig={self.kubeconfig}", *args]

    def kubectl_env(self) -> dict[str, str]:
        return dict(self._kubectl_env)

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        text = self.log_since(0) if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the cluster CA and presents the admin certificate, as kubectl does."""
        tls = self.data_dir / "tls"
        ctx = ssl.create_default_context(cafile=str(tls / "server-ca.crt"))
        ctx.load_cert_chain(tls / "client-admin.crt", tls / "client-admin.key")
        return ctx

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc else None
                raise RuntimeError(f"nanokube server exited {code} during start\n{self.log_tail()}")
            try:
                status = self._get_status("/readyz")
                if status == 200:
                    return
                last_error = f"/readyz answered {status}"
            except (OSError, ssl.SSLError, http.client.HTTPException) as e:
                last_error = f"{type(e).__name__}: {e}"
            time.sleep(0.02)
        self.kill9()
        raise RuntimeError(
            f"nanokube server not ready after {START_TIMEOUT}s ({last_error})\n{self.log_tail()}"
        )

    def _get_status(self, path: str) -> int:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.ssl_context(), timeout=5
        )
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        finally:
            conn.close()

    def _note(self, message: str) -> None:
        with self.log_path.open("a") as log:
            log.write(f"=== harness: {message} ===\n")


def die_with_parent() -> None:
    """In the child before exec: SIGKILL it if pytest dies, so no server outlives a killed run."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _run_cluster(
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
    name: str,
    extra_args: tuple[str, ...] = (),
    with_agent: bool = False,
    prepare: Callable[[Cluster], None] | None = None,
    drain: Callable[[Cluster], None] | None = None,
) -> Iterator[Cluster]:
    """A started `Cluster`; `prepare` runs before its first start, `drain` before its stop."""
    if not os.access(KUBECTL, os.X_OK):
        pytest.skip(f"{KUBECTL} is not installed: the e2e tests drive the real kubectl")
    c = Cluster(tmp_path_factory.mktemp(name), free_port(), extra_args, with_agent)
    if prepare is not None:
        prepare(c)
    c.start()
    yield c
    if drain is not None:
        c.ensure_running()
        drain(c)
    code = c.stop()
    if request.session.testsfailed:
        _print_section(request, f"{name} server log (tail)", c.log_tail())
    if code not in (0, None):
        raise AssertionError(f"nanokube server exited {code} on SIGTERM\n{c.log_tail()}")


@pytest.fixture(scope="session")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """A server with no nodes."""
    yield from _run_cluster(tmp_path_factory, request, "nanokube-e2e")


SIM_ARGS = (
    "--simulated-nodes",
    "4",
    # Short enough that node failure tests take seconds, not minutes.
    "--node-monitor-grace-period",
    "6",
)


@pytest.fixture(scope="session")
def sim_cluster(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """A server with four simulated nodes (4 CPU, 16Gi, 110 pods each)."""
    yield from _run_cluster(tmp_path_factory, request, "nanokube-sim", SIM_ARGS)


@pytest.fixture(scope="session")
def headless_cluster(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """A server with two simulated nodes that runs neither controllers nor a scheduler."""
    yield from _run_cluster(
        tmp_path_factory,
        request,
        "nanokube-headless",
        ("--simulated-nodes", "2", "--disable-controller-manager", "--disable-scheduler"),
    )


NODE_NAME = "nanokube-e2e-node"
NODE_BRIDGE = "nke2e0"
NODE_CLUSTER_CIDR = "10.195.0.0/16"  # tests/runtime, kubelet, cli and network use 10.196-199
DRAIN_TIMEOUT = 90.0
CLUSTER_FIXTURES = ("cluster", "sim_cluster", "headless_cluster", "node_cluster")


def node_requirements_missing() -> str | None:
    """Why `node_cluster` cannot run here (its agent runs real containers), or None."""
    from nanokube.kubelet.agent import missing_requirements

    missing = missing_requirements()
    if missing:
        return f"the node agent cannot run here: {missing}"
    if not os.path.exists("/bin/busybox"):
        return "the test image needs /bin/busybox (apt-get install busybox-static)"
    return None


def runc_root(c: Cluster) -> str:
    """The runc root of a node cluster's agent (under its `--state-dir`)."""
    return str(Path(c.flag("--state-dir")) / "runc")


def runc_containers(c: Cluster) -> list[dict[str, object]]:
    """`runc list` of the node cluster's own runc root (its containers only)."""
    out = subprocess.run(
        ["runc", "--root", runc_root(c), "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out or "null") or []


def _write_busybox(c: Cluster) -> None:
    from nanokube.runtime.images.busybox import write_busybox_archive

    write_busybox_archive(c.data_dir / "agent" / "images" / "busybox.tar")


def _drain_node(c: Cluster) -> None:
    """Delete every workload and pod through the API and wait until no container runs."""
    c.kubectl(
        "delete",
        "deployments,replicasets,statefulsets,daemonsets,jobs",
        "--all",
        "--all-namespaces",
        "--wait=false",
        check=False,
    )
    c.kubectl(
        "delete",
        "pods",
        "--all",
        "--all-namespaces",
        "--grace-period=1",
        "--wait=false",
        check=False,
    )
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        pods = c.kubectl("get", "pods", "-A", "-o", "name", check=False).stdout.split()
        if not pods and not runc_containers(c):
            return
        time.sleep(0.5)
    left = runc_containers(c)
    _force_clean(c)
    raise AssertionError(f"containers left {DRAIN_TIMEOUT}s after deleting every pod: {left}")


def _force_clean(c: Cluster) -> None:
    """Last resort after a failed drain: kill and delete what the agent left behind."""
    for container in runc_containers(c):
        subprocess.run(
            ["runc", "--root", runc_root(c), "delete", "-f", str(container["id"])],
            capture_output=True,
        )


def _remove_node_leftovers(state_dir: Path, cgroup_root: str) -> None:
    """What the agent made that outlives its process: the bridge, the (empty) cgroups,
    and the shared bind mount of its netns dir (which keeps pytest from removing the
    tmp dir)."""
    subprocess.run(["ip", "link", "del", NODE_BRIDGE], capture_output=True)
    netns = str(state_dir / "netns")
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    if netns in mounts:  # os.path.ismount misses a bind mount within one file system
        subprocess.run(["umount", "--lazy", netns], capture_output=True)
    for controller in Path("/sys/fs/cgroup").iterdir():
        top = controller / cgroup_root.lstrip("/")
        if top.is_dir() and not top.is_symlink():
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()


@pytest.fixture(scope="session")
def node_cluster(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """A server with its own node agent (real runc containers) and a busybox image."""
    reason = node_requirements_missing()
    if reason:
        pytest.skip(reason)
    host = tmp_path_factory.mktemp("nanokube-node-host")  # the agent's state and logs
    cgroup_root = f"/nanokube-e2e-{os.getpid()}"
    args = (
        "--node-name",
        NODE_NAME,
        "--kubelet-port",
        str(free_port()),
        "--cni-bridge",
        NODE_BRIDGE,
        "--cluster-cidr",
        NODE_CLUSTER_CIDR,
        "--state-dir",
        str(host / "run"),
        "--pod-log-dir",
        str(host / "logs"),
        "--cgroup-root",
        cgroup_root,
    )
    try:
        yield from _run_cluster(
            tmp_path_factory,
            request,
            "nanokube-node",
            args,
            with_agent=True,
            prepare=_write_busybox,
            drain=_drain_node,
        )
    finally:
        _remove_node_leftovers(host / "run", cgroup_root)


_LOG_OFFSET = pytest.StashKey[int]()


@pytest.fixture(autouse=True)
def _cluster_alive(request: pytest.FixtureRequest) -> None:
    """Start the server again if an earlier test killed it; remember where this test's log begins."""
    for name in CLUSTER_FIXTURES:
        if name in request.fixturenames:
            c: Cluster = request.getfixturevalue(name)
            c.ensure_running()
            request.node.stash[_LOG_OFFSET] = c.log_size()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed or _LOG_OFFSET not in item.stash:
        return
    funcargs = item.funcargs if isinstance(item, pytest.Function) else {}
    c = next((funcargs[n] for n in CLUSTER_FIXTURES if n in funcargs), None)
    if isinstance(c, Cluster):
        report.sections.append(
            ("nanokube server log during this test", c.log_since(item.stash[_LOG_OFFSET]))
        )


def _print_section(request: pytest.FixtureRequest, title: str, text: str) -> None:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        print(f"--- {title} ---\n{text}", file=sys.stderr)
        return
    reporter.write_sep("-", title)
    reporter.write_line(text)

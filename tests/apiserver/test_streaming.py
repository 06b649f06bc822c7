"""The streaming subresources end to end: the real kubectl → the API server → a node
agent's streaming server over HTTPS with client certificates → a fake backend.

Aspects: exec (output, exit codes, stdin, stderr, a tty on a pty with resizes),
attach, cp both ways, logs (tail, timestamps, limit, since, previous, follow),
port-forward with two connections, and the API server's own checks (container
names, pod phase, agent errors).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import signal
import struct
import sys
import termios
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from nanokube.api.options import WriteOptions
from nanokube.apiserver import streaming
from nanokube.apiserver.server import APIServer, APIServerConfig, start
from nanokube.cli import certs, kubeconfig
from nanokube.kubelet.streaming import server as agent
from nanokube.storage.memory import MemoryStore

sys.path.insert(0, str(Path(__file__).parent.parent / "kubelet"))
from fake_streaming_backend import FakeBackend, echo_server  # noqa: E402
from support import free_port

KUBECTL = Path("/usr/bin/kubectl")
TIMEOUT = 30.0

pytestmark = pytest.mark.skipif(
    not KUBECTL.exists(), reason="needs the real kubectl at /usr/bin/kubectl"
)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[certs.ClusterTLS, Path]]:
    root = tmp_path_factory.mktemp("tls")
    cluster_tls = certs.ensure_cluster_tls(root / "tls", certs.serving_sans())
    cert, key = certs.sign_client_cert(
        cluster_tls, "kube-apiserver-kubelet-client", ("system:masters",)
    )
    (root / "kubelet-client.crt").write_bytes(cert)
    (root / "kubelet-client.key").write_bytes(key)
    yield cluster_tls, root


@dataclass
class Cluster:
    api: APIServer
    backend: FakeBackend
    root: Path
    kubeconfig: Path
    agent_port: int

    def env(self, spdy: bool = False) -> dict[str, str]:
        """kubectl's environment; `spdy` turns its WebSocket streams off (the fallback)."""
        if spdy:
            return {
                **self.env(),
                "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false",
                "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false",
            }
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECACHEDIR": str(self.root / "cache"),
        }

    async def kubectl(
        self, *args: str, stdin: bytes | None = None, spdy: bool = False
    ) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            str(KUBECTL),
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env(spdy),
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin), TIMEOUT)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def put_pod(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        kind = self.api.registry.by_resource("", "v1", "pods")
        assert kind is not None
        ns = pod["metadata"].setdefault("namespace", "default")
        created = await self.api.resources.create(kind, ns, pod, WriteOptions(), [])
        new = {**created, "spec": {**created["spec"], "nodeName": "node1"}, "status": status}
        await self.api.resources.write(
            kind, ns, pod["metadata"]["name"], created, new, WriteOptions()
        )

    async def set_pod_status(self, name: str, status: dict[str, Any]) -> None:
        kind = self.api.registry.by_resource("", "v1", "pods")
        assert kind is not None
        old = await self.api.resources.get(kind, "default", name)
        await self.api.resources.write(
            kind, "default", name, old, {**old, "status": status}, WriteOptions()
        )


def running_status(*containers: str, restarted: bool = False) -> dict[str, Any]:
    statuses = []
    for name in containers:
        cs: dict[str, Any] = {
            "name": name,
            "ready": True,
            "restartCount": 1 if restarted else 0,
            "image": "busybox",
            "imageID": "",
            "started": True,
            "state": {"running": {"startedAt": "2024-01-02T03:04:05Z"}},
        }
        if restarted:
            cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error"}}
        statuses.append(cs)
    return {"phase": "Running", "podIP": "10.42.0.5", "containerStatuses": statuses}


def pod(name: str, *containers: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": c, "image": "busybox"} for c in containers]},
    }


@pytest.fixture
async def cluster(tls: tuple[certs.ClusterTLS, Path], tmp_path: Path) -> AsyncIterator[Cluster]:
    cluster_tls, root = tls
    serving_crt, serving_key = cluster_tls.serving
    config = APIServerConfig(
        store=MemoryStore(),
        port=free_port(),
        cert_file=str(serving_crt),
        key_file=str(serving_key),
        client_ca_file=str(cluster_tls.client_ca[0]),
    )
    api, runner = await start(config)
    dialer = streaming.node_dialer(
        str(cluster_tls.server_ca[0]),
        str(root / "kubelet-client.crt"),
        str(root / "kubelet-client.key"),
    )
    streaming.register(api.handler, dialer)
    backend = FakeBackend(tmp_path)
    agent_port = free_port()
    # The agent serves with a certificate of the cluster's server CA (any will do:
    # the API server checks the CA, not the name) and trusts the client CA.
    agent_ctx = agent.ssl_context(str(serving_crt), str(serving_key), str(cluster_tls.client_ca[0]))
    agent_runner = await agent.start(backend, "127.0.0.1", agent_port, agent_ctx)
    kc = tmp_path / "kubeconfig"
    kc.write_text(
        kubeconfig.render(
            f"https://127.0.0.1:{config.port}",
            cluster_tls.server_ca[0].read_bytes(),
            cluster_tls.admin[0].read_bytes(),
            cluster_tls.admin[1].read_bytes(),
        )
    )
    c = Cluster(api, backend, tmp_path, kc, agent_port)
    node_kind = api.registry.by_resource("", "v1", "nodes")
    assert node_kind is not None
    node = await api.resources.create(
        node_kind, "", {"metadata": {"name": "node1"}}, WriteOptions(), []
    )
    status = {
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": "node1"},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": agent_port}},
    }
    await api.resources.write(
        node_kind, "", "node1", node, {**node, "status": status}, WriteOptions()
    )
    await c.put_pod(pod("web", "app"), running_status("app"))
    try:
        yield c
    finally:
        await agent_runner.cleanup()
        await api.cache.stop()
        await runner.cleanup()


# -- exec ------------------------------------------------------------------------


async def test_exec_prints_output(cluster: Cluster) -> None:
    rc, out, err = await cluster.kubectl("exec", "web", "--", "echo", "hi")
    assert (rc, out) == (0, "hi\n"), err
    assert cluster.backend.calls[0][1].uid  # the API server names the pod by uid too


async def test_exec_exit_code_propagates(cluster: Cluster) -> None:
    rc, out, err = await cluster.kubectl(
        "exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 3"
    )
    assert rc == 3
    assert out == "out\n"
    assert "err\n" in err
    assert "command terminated with exit code 3" in err


async def test_exec_with_stdin(cluster: Cluster) -> None:
    data = b"".join(b"line %d\n" % i for i in range(2000))
    rc, out, err = await cluster.kubectl(
        "exec", "-i", "web", "--", "sh", "-c", "cat; echo done", stdin=data
    )
    assert rc == 0, err
    assert out.encode() == data + b"done\n"


async def test_exec_container_errors(cluster: Cluster) -> None:
    rc, _, err = await cluster.kubectl("exec", "web", "-c", "nope", "--", "true")
    assert rc == 1
    assert "container nope is not valid for pod web" in err
    await cluster.set_pod_status("web", {"phase": "Pending"})
    rc, _, err = await cluster.kubectl("exec", "web", "--", "true")
    assert rc == 1
    assert "pod web is not running" in err


@pytest.mark.parametrize("spdy", [False, True], ids=["websocket", "spdy"])
async def test_exec_tty_with_resize(cluster: Cluster, spdy: bool) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = await asyncio.create_subprocess_exec(
        str(KUBECTL),
        "exec",
        "-it",
        "web",
        "--",
        "sh",
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=cluster.env(spdy),
        start_new_session=True,
    )
    os.close(slave)
    seen = bytearray()
    loop = asyncio.get_running_loop()
    grew = asyncio.Event()

    def readable() -> None:
        try:
            seen.extend(os.read(master, 65536))
        except OSError:
            loop.remove_reader(master)
        grew.set()

    os.set_blocking(master, False)
    loop.add_reader(master, readable)

    async def expect(text: bytes) -> None:
        async with asyncio.timeout(TIMEOUT):
            while text not in seen:
                grew.clear()
                await grew.wait()

    try:
        os.write(master, b"stty size\r")
        await expect(b"30 100")
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        proc.send_signal(signal.SIGWINCH)
        async with asyncio.timeout(TIMEOUT):
            while len(cluster.backend.resizes) < 2:
                await asyncio.sleep(0.05)
        os.write(master, b"stty size; exit 5\r")
        await expect(b"40 120")
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 5
    finally:
        loop.remove_reader(master)
        os.close(master)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert cluster.backend.resizes[0] == agent.TerminalSize(100, 30)


@pytest.mark.parametrize("spdy", [False, True], ids=["websocket", "spdy"])
async def test_attach(cluster: Cluster, spdy: bool) -> None:
    rc, out, err = await cluster.kubectl("attach", "-i", "web", stdin=b"hello\n", spdy=spdy)
    assert rc == 0, err
    assert out == "attached\nHELLO\n"
    assert cluster.backend.calls[-1][0] == "attach"


async def test_cp_both_ways(cluster: Cluster, tmp_path: Path) -> None:
    local = tmp_path / "local.txt"
    local.write_text("payload\n" * 100)
    pod_dir = tmp_path / "podfs"
    pod_dir.mkdir()
    rc, _, err = await cluster.kubectl("cp", str(local), f"web:{pod_dir}/copied.txt")
    assert rc == 0, err
    assert (pod_dir / "copied.txt").read_text() == local.read_text()
    back = tmp_path / "back.txt"
    rc, _, err = await cluster.kubectl("cp", f"web:{pod_dir}/copied.txt", str(back))
    assert rc == 0, err
    assert back.read_text() == local.read_text()


# -- logs ------------------------------------------------------------------------

LOG = (
    b"2024-01-02T03:04:05.000000001Z stdout F first\n"
    b"2024-01-02T03:04:06.000000000Z stderr P par\n"
    b"2024-01-02T03:04:06.100000000Z stderr F tial\n"
    b"2024-01-02T03:04:07.000000000Z stdout F third\n"
)


async def test_logs_options(cluster: Cluster) -> None:
    cluster.backend.log_file("app", 0).write_bytes(LOG)
    rc, out, err = await cluster.kubectl("logs", "web")
    assert (rc, out) == (0, "first\npartial\nthird\n"), err
    rc, out, _ = await cluster.kubectl("logs", "web", "--tail=1")
    assert out == "third\n"
    rc, out, _ = await cluster.kubectl("logs", "web", "--tail=1", "--timestamps")
    assert out == "2024-01-02T03:04:07.000000000Z third\n"
    rc, out, _ = await cluster.kubectl("logs", "web", "--limit-bytes=8")
    assert out == "first\npa"
    # kubectl sends sinceTime in whole seconds
    rc, out, _ = await cluster.kubectl("logs", "web", "--since-time=2024-01-02T03:04:06.5Z")
    assert out == "partial\nthird\n"
    rc, out, _ = await cluster.kubectl("logs", "web", "--since-time=2024-01-02T03:04:07Z")
    assert out == "third\n"


async def test_logs_previous(cluster: Cluster) -> None:
    cluster.backend.log_file("app", 0).write_bytes(b"2024-01-02T03:04:05Z stdout F old\n")
    cluster.backend.log_file("app", 1).write_bytes(b"2024-01-02T03:04:05Z stdout F new\n")
    rc, _, err = await cluster.kubectl("logs", "web", "--previous")
    assert rc == 1
    assert 'previous terminated container "app" in pod "web" not found' in err
    await cluster.set_pod_status("web", running_status("app", restarted=True))
    rc, out, err = await cluster.kubectl("logs", "web", "--previous")
    assert (rc, out) == (0, "old\n"), err
    rc, out, err = await cluster.kubectl("logs", "web")
    assert (rc, out) == (0, "new\n"), err


async def test_logs_follow(cluster: Cluster) -> None:
    path = cluster.backend.log_file("app", 0)
    path.write_bytes(b"2024-01-02T03:04:05Z stdout F one\n")
    proc = await asyncio.create_subprocess_exec(
        str(KUBECTL), "logs", "-f", "web", stdout=asyncio.subprocess.PIPE, env=cluster.env()
    )
    assert proc.stdout is not None
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), TIMEOUT) == b"one\n"
        with path.open("ab") as f:
            f.write(b"2024-01-02T03:04:06Z stdout F two\n")
        assert await asyncio.wait_for(proc.stdout.readline(), TIMEOUT) == b"two\n"
        cluster.backend.running = False  # the container exits: the follow ends
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_logs_waiting_container(cluster: Cluster) -> None:
    status = running_status("app")
    status["containerStatuses"][0]["state"] = {"waiting": {"reason": "ContainerCreating"}}
    await cluster.set_pod_status("web", status)
    rc, _, err = await cluster.kubectl("logs", "web")
    assert rc == 1
    assert 'container "app" in pod "web" is waiting to start: ContainerCreating' in err


# -- port-forward ----------------------------------------------------------------


async def test_port_forward_two_connections(cluster: Cluster) -> None:
    server, echo_port = await echo_server()
    cluster.backend.ports[8080] = echo_port
    local = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(KUBECTL),
        "port-forward",
        "pod/web",
        f"{local}:8080",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cluster.env(),
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
        assert f"Forwarding from 127.0.0.1:{local} -> 8080".encode() in line
        conns = [await asyncio.open_connection("127.0.0.1", local) for _ in range(2)]
        for i, (reader, writer) in enumerate(conns):
            payload = b"x" * 100_000 + b"%d" % i
            writer.write(payload)
            await writer.drain()
            writer.write_eof()
            got = await asyncio.wait_for(reader.read(), TIMEOUT)
            assert got == b"echo:" + payload
            writer.close()
        # the session survives finished connections
        reader, writer = await asyncio.open_connection("127.0.0.1", local)
        writer.write(b"again")
        assert await asyncio.wait_for(reader.readexactly(10), TIMEOUT) == b"echo:again"
        writer.close()
        assert proc.returncode is None
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), TIMEOUT)
        server.close()
    assert [c[2] for c in cluster.backend.calls] == ["8080", "8080", "8080"]


async def test_port_forward_needs_running_pod(cluster: Cluster) -> None:
    await cluster.set_pod_status("web", {"phase": "Pending"})
    rc, _, err = await cluster.kubectl("port-forward", "pod/web", f"{free_port()}:8080")
    assert rc == 1
    assert "pod is not running" in err


# -- the API server's checks, over plain HTTP --------------------------------------


async def test_container_name_required_for_several(
    cluster: Cluster, tls: tuple[certs.ClusterTLS, Path]
) -> None:
    await cluster.put_pod(pod("two", "a", "b"), running_status("a", "b"))
    cluster_tls, _ = tls
    import ssl

    ctx = ssl.create_default_context(cafile=str(cluster_tls.server_ca[0]))
    ctx.load_cert_chain(*map(str, cluster_tls.admin))
    url = f"https://127.0.0.1:{cluster.api.config.port}/api/v1/namespaces/default/pods/two/log"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, ssl=ctx) as resp:
            body = await resp.json()
    assert resp.status == 400
    assert body["message"] == "a container name must be specified for pod two, choose one of: [a b]"


async def test_unreachable_agent(cluster: Cluster) -> None:
    node_kind = cluster.api.registry.by_resource("", "v1", "nodes")
    assert node_kind is not None
    old = await cluster.api.resources.get(node_kind, "", "node1")
    status = {**old["status"], "daemonEndpoints": {"kubeletEndpoint": {"Port": free_port()}}}
    await cluster.api.resources.write(
        node_kind, "", "node1", old, {**old, "status": status}, WriteOptions()
    )
    rc, _, err = await cluster.kubectl("exec", "web", "--", "true")
    assert rc == 1
    assert "error dialing the node agent" in err
    cluster.backend.log_file("app", 0).write_bytes(b"")
    rc, _, err = await cluster.kubectl("logs", "web")
    assert rc == 1
    assert "error dialing the node agent" in err


# -- kubectl's SPDY fallback ---------------------------------------------------------


async def test_spdy_exec(cluster: Cluster) -> None:
    rc, out, err = await cluster.kubectl("exec", "web", "--", "echo", "hi", spdy=True)
    assert (rc, out) == (0, "hi\n"), err
    rc, out, err = await cluster.kubectl(
        "exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 3", spdy=True
    )
    assert (rc, out) == (3, "out\n")
    assert "err\n" in err
    data = b"x" * 300_000
    rc, out, err = await cluster.kubectl(
        "exec", "-i", "web", "--", "wc", "-c", stdin=data, spdy=True
    )
    assert (rc, out.strip()) == (0, "300000"), err


async def test_spdy_port_forward(cluster: Cluster) -> None:
    server, echo_port = await echo_server()
    cluster.backend.ports[8080] = echo_port
    local = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(KUBECTL),
        "port-forward",
        "pod/web",
        f"{local}:8080",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cluster.env(spdy=True),
    )
    assert proc.stdout is not None
    try:
        await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
        for i in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", local)
            writer.write(b"ping%d" % i)
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b"echo:ping%d" % i
            writer.close()
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), TIMEOUT)
        server.close()

"""`nanokube agent`: joining with a token, then a real node agent against a real HTTPS server.

Aspects: the join flow (CA fetched and checked against the token's hash,
CSRs signed, files written with private keys 0600, a kubeconfig); the
node's certificate as its identity (registration over the HTTPS client);
reuse of valid certificates without a token; a token of another CA or with
a wrong secret refused; the in-process agent's certificates signed locally;
flag parsing; and (root, runc, CNI plugins, busybox-static) `run()` from
token to a Ready node that runs a pod from an archive in `agent/images`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from support import free_port

from nanokube.api.resources.core import POD
from nanokube.api.resources.core_node import NODE
from nanokube.apiserver import patching, tokens, tokens_nodecert
from nanokube.apiserver import server as apiserver
from nanokube.cli import agent as agent_cli
from nanokube.cli import agent_join, certs
from nanokube.client.http import HTTPClient
from nanokube.client.informer import SharedInformerFactory
from nanokube.client.inprocess import InProcessClient
from nanokube.controllers.nodeipam import NodeIPAMController
from nanokube.kubelet import agent as kubelet_agent
from nanokube.kubelet.agent_streaming import RuntimeStreaming
from nanokube.kubelet.node import NodeConfig, NodeStatusManager
from nanokube.kubelet.streaming.server import PodRef
from nanokube.kubelet.volumes import unmount_below
from nanokube.storage.memory import MemoryStore

Obj = dict[str, Any]


class Cluster:
    def __init__(self, url: str, token: tokens.JoinToken, tls: certs.ClusterTLS, api: Any) -> None:
        self.url = url
        self.token = token
        self.tls = tls
        self.api = api

    def client(self) -> InProcessClient:
        return InProcessClient(self.api.resources, patching.patch)


@pytest.fixture
async def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    """A TLS API server taking join tokens (the middleware wiring the lead adds)."""
    tls = certs.ensure_cluster_tls(tmp_path / "server" / "tls", certs.serving_sans())
    token = tokens.ensure_token_file(tmp_path / "server", tls.server_ca[0].read_bytes())
    auth = tokens.TokenAuthenticator(token)
    monkeypatch.setattr(apiserver, "_user_of", tokens.with_bearer_tokens(apiserver._user_of, auth))
    monkeypatch.setattr(
        apiserver, "ANONYMOUS_PATHS", apiserver.ANONYMOUS_PATHS | tokens_nodecert.ANONYMOUS_PATHS
    )
    config = apiserver.APIServerConfig(
        store=MemoryStore(),
        port=free_port(),
        cert_file=str(tls.serving[0]),
        key_file=str(tls.serving[1]),
        client_ca_file=str(tls.client_ca[0]),
    )
    api = apiserver.build_app(config)
    tokens_nodecert.register(
        api.app, tokens_nodecert.NodeCertIssuer(tls.server_ca, tls.client_ca, auth)
    )
    await api.cache.start()
    await apiserver.ensure_system_namespaces(api.resources, api.registry)
    runner = aiohttp.web.AppRunner(api.app, handle_signals=False)
    await runner.setup()
    await aiohttp.web.TCPSite(
        runner, "127.0.0.1", config.port, ssl_context=apiserver.ssl_context(config)
    ).start()
    try:
        yield Cluster(f"https://127.0.0.1:{config.port}", token, tls, api)
    finally:
        await api.cache.stop()
        await runner.cleanup()


async def test_join_then_register_as_the_node(cluster: Cluster, tmp_path: Path) -> None:
    tls_dir = tmp_path / "agent" / "tls"
    creds = await agent_join.join(cluster.url, str(cluster.token), "node-j", ["10.0.0.9"], tls_dir)
    for path in (creds.client_key, creds.serving_key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(creds.client_cert.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=system:node:node-j,O=system:nodes"
    assert creds.server_ca.read_bytes() == cluster.tls.server_ca[0].read_bytes()

    client = HTTPClient(
        cluster.url, str(creds.server_ca), str(creds.client_cert), str(creds.client_key)
    )
    try:
        mgr = NodeStatusManager(client, NodeConfig("node-j", tmp_path, internal_ip="10.0.0.9"))
        await mgr.register()
        node = await client.get(NODE, "node-j")
        assert node["status"]["addresses"][0] == {"type": "InternalIP", "address": "10.0.0.9"}
    finally:
        await client.close()

    # Valid certificates are reused: no token needed, nothing rewritten.
    stamp = creds.client_cert.stat().st_mtime_ns
    again = await agent_join.join(cluster.url, "", "node-j", ["10.0.0.9"], tls_dir)
    assert again == creds and creds.client_cert.stat().st_mtime_ns == stamp
    kubeconfig = tmp_path / "kubelet.kubeconfig"
    agent_join.write_kubeconfig(kubeconfig, cluster.url, creds)
    reader = HTTPClient.from_kubeconfig(kubeconfig)
    try:
        assert (await reader.get(NODE, "node-j"))["metadata"]["name"] == "node-j"
    finally:
        await reader.close()


async def test_join_refusals(cluster: Cluster, tmp_path: Path) -> None:
    other_ca = tokens.JoinToken(cluster.token.secret, ca_hash="0" * 64)
    with pytest.raises(agent_join.JoinError, match="does not match the token's CA hash"):
        await agent_join.join(cluster.url, str(other_ca), "n", [], tmp_path / "a")
    wrong = tokens.JoinToken("not-the-secret", cluster.token.ca_hash)
    with pytest.raises(agent_join.JoinError, match="HTTP 401"):
        await agent_join.join(cluster.url, str(wrong), "n", [], tmp_path / "b")
    with pytest.raises(agent_join.JoinError, match="no --token"):
        await agent_join.join(cluster.url, "", "n", [], tmp_path / "c")
    with pytest.raises(agent_join.JoinError, match="cannot reach"):
        await agent_join.join(f"https://127.0.0.1:{free_port()}", "x", "n", [], tmp_path / "d")
    # The short form trusts the first CA it is served.
    creds = await agent_join.join(cluster.url, cluster.token.secret, "short", [], tmp_path / "e")
    assert agent_join.credentials_valid(creds, "short")
    assert not agent_join.credentials_valid(creds, "another-node")


def test_local_node_credentials(tmp_path: Path) -> None:
    tls = certs.ensure_cluster_tls(tmp_path / "tls", certs.serving_sans())
    creds = agent_cli.local_node_credentials(tls, "local", ["10.0.0.1"], tmp_path / "agent-tls")
    assert agent_join.credentials_valid(creds, "local")
    serving = x509.load_pem_x509_certificate(creds.serving_cert.read_bytes())
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"10.0.0.1", "127.0.0.1"}
    stamp = creds.client_cert.stat().st_mtime_ns
    agent_cli.local_node_credentials(tls, "local", ["10.0.0.1"], tmp_path / "agent-tls")
    assert creds.client_cert.stat().st_mtime_ns == stamp


def test_flags() -> None:
    assert agent_cli.parse_labels(["a=1", "b="]) == {"a": "1", "b": ""}
    assert agent_cli.parse_taints(["k=v:NoSchedule", "gpu:NoExecute"]) == [
        {"key": "k", "effect": "NoSchedule", "value": "v"},
        {"key": "gpu", "effect": "NoExecute"},
    ]
    for bad in (["novalue"],):
        with pytest.raises(ValueError):
            agent_cli.parse_labels(bad)
    with pytest.raises(ValueError):
        agent_cli.parse_taints(["k=v:Sometimes"])


# --- the whole agent, with real containers -------------------------------------------


def _missing() -> str | None:
    if kubelet_agent.missing_requirements():
        return f"the agent cannot run here: {kubelet_agent.missing_requirements()}"
    if not os.path.exists("/bin/busybox"):
        return "the test image needs busybox-static (apt-get install busybox-static)"
    return None


async def test_agent_runs_a_pod(cluster: Cluster, tmp_path: Path) -> None:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))
    import imagebuild  # the runtime tests' busybox image builder

    data_dir = tmp_path / "agent-data"
    (data_dir / "agent" / "images").mkdir(parents=True)
    imagebuild.write_docker_archive(
        data_dir / "agent" / "images" / "busybox.tar",
        [(imagebuild.busybox_image(), ["docker.io/library/busybox:test"])],
    )
    options = agent_cli.AgentCommandOptions(
        server=cluster.url,
        token=str(cluster.token),
        data_dir=data_dir,
        node_name="agent-1",
        node_ip="127.0.0.1",
        kubelet_port=free_port(),
        bridge="nkagt0",
        state_dir=tmp_path / "run",
        log_dir=tmp_path / "logs",
        cgroup_root=f"/nanokube-agent-test-{os.getpid()}",
    )
    client = cluster.client()
    informers = SharedInformerFactory(client)
    ipam = NodeIPAMController(client, informers, cluster_cidr="10.197.0.0/16")
    ipam.start()
    informers.start()
    stop = asyncio.Event()
    holder: list[kubelet_agent.NodeAgent] = []
    task = asyncio.create_task(agent_cli.run(options, stop, holder))
    try:
        async with asyncio.timeout(60):
            while not holder or not holder[0].ready.is_set():
                assert not task.done(), task.exception()
                await asyncio.sleep(0.1)
        node = await client.get(NODE, "agent-1")
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", ready
        assert node["spec"]["podCIDR"].startswith("10.197.")
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("runc://")
        names = [n for im in node["status"]["images"] for n in im["names"]]
        assert "docker.io/library/busybox:test" in names
        await client.create(
            POD,
            {
                "metadata": {"name": "hello", "namespace": "default"},
                "spec": {
                    "nodeName": "agent-1",
                    "containers": [
                        {
                            "name": "app",
                            "image": "busybox:test",
                            "imagePullPolicy": "Never",
                            "command": ["sh", "-c", "cat /config/greeting; echo; sleep 3600"],
                            "volumeMounts": [{"name": "config", "mountPath": "/config"}],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "config",
                            "downwardAPI": {
                                "items": [
                                    {"path": "greeting", "fieldRef": {"fieldPath": "metadata.name"}}
                                ]
                            },
                        }
                    ],
                },
            },
        )
        async with asyncio.timeout(60):
            while True:
                pod = await client.get(POD, "hello", "default")
                if (pod.get("status") or {}).get("phase") == "Running":
                    break
                await asyncio.sleep(0.2)
        assert pod["status"]["podIP"].startswith("10.197.")
        logs = list((tmp_path / "logs").rglob("0.log"))
        async with asyncio.timeout(10):
            while not any(b"hello" in p.read_bytes() for p in logs):
                await asyncio.sleep(0.1)
                logs = list((tmp_path / "logs").rglob("0.log"))
        agent = holder[0]
        sample = await agent.metrics.collect()
        assert [c.pod for c in sample.containers] == ["hello"]
        # Exec through the streaming backend, and /metrics/resource over the node's HTTPS
        # server as the API server scrapes it (a system:masters client certificate).
        out: list[bytes] = []

        async def sink(data: bytes) -> None:
            out.append(data)

        backend = RuntimeStreaming(agent.runtime)
        ref = PodRef("default", "hello")
        code = await backend.exec(
            ref,
            "app",
            ["cat", "/config/greeting"],
            tty=False,
            stdin=None,
            stdout=sink,
            stderr=None,
            resize=None,
        )
        assert (code, b"".join(out)) == (0, b"hello")
        assert await backend.container_running(ref, "app")
        assert (await backend.log_path(ref, "app", previous=False)).name == "0.log"
        ctx = ssl.create_default_context(cafile=str(cluster.tls.server_ca[0]))
        ctx.load_cert_chain(*(str(p) for p in cluster.tls.admin))
        url = f"https://127.0.0.1:{options.kubelet_port}/metrics/resource"
        async with aiohttp.ClientSession() as session:
            async with session.get(url, ssl=ctx) as resp:
                text = await resp.text()
        assert resp.status == 200, text
        assert (
            'container_cpu_usage_seconds_total{container="app",namespace="default",pod="hello"}'
            in text
        )
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        if holder and holder[0].runtime is not None:
            runtime = holder[0].runtime
            for sb in await runtime.list_sandboxes():
                await runtime.remove_sandbox(sb.id)
        if holder:
            holder[0].volumes.cleanup_orphans([])
        await ipam.stop()
        await informers.shutdown()
        subprocess.run(["ip", "link", "del", "nkagt0"], capture_output=True)
        from nanokube.runtime.oci import cgroups

        cgroups.remove(options.cgroup_root)
        unmount_below(str(tmp_path))  # the runtime's shared netns directory
        shutil.rmtree(tmp_path / "run", ignore_errors=True)

"""Pod spec → runtime configs.

Aspects: DNS by dnsPolicy (ClusterFirst, hostNetwork fallback, None with dnsConfig),
host ports, resources → cgroup figures, securityContext merging, volume mounts with
subPath and a missing volume, $(VAR) expansion, command/args over the image's
entrypoint/cmd, downward API values, and env errors (missing objects and keys, optional
references) against a real API server.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from nanokube.api.resources.core import CONFIG_MAP
from nanokube.apiserver import patching
from nanokube.apiserver.server import APIServerConfig, start
from nanokube.client.inprocess import InProcessClient
from nanokube.kubelet import podconfig
from nanokube.kubelet.podconfig import ContainerConfigError, PodContext
from nanokube.runtime.contract import ImageConfig
from nanokube.storage.memory import MemoryStore


def pod(**spec: object) -> dict:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": "n1", **spec},
    }


def test_dns_cluster_first_and_fallbacks():
    dns = podconfig.dns_config(pod(), ["10.43.0.10"], "cluster.local")
    assert dns is not None and dns.nameservers == ["10.43.0.10"]
    assert dns.searches[:3] == ["ns.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    assert dns.options == ["ndots:5"]
    assert podconfig.dns_config(pod(hostNetwork=True), ["10.43.0.10"], "cluster.local") is None
    assert podconfig.dns_config(pod(), [], "cluster.local") is None
    with_host_net = podconfig.dns_config(
        pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), ["10.43.0.10"], "cluster.local"
    )
    assert with_host_net is not None and with_host_net.nameservers == ["10.43.0.10"]
    custom = podconfig.dns_config(
        pod(
            dnsPolicy="None",
            dnsConfig={
                "nameservers": ["1.1.1.1"],
                "searches": ["example.com"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
            },
        ),
        ["10.43.0.10"],
        "cluster.local",
    )
    assert custom is not None
    assert (custom.nameservers, custom.searches, custom.options) == (
        ["1.1.1.1"],
        ["example.com"],
        ["ndots:2", "edns0"],
    )


def test_sandbox_config_ports_and_aliases():
    p = pod(hostAliases=[{"ip": "10.0.0.5", "hostnames": ["db"]}])
    p["spec"]["containers"][0]["ports"] = [
        {"containerPort": 80, "hostPort": 8080},
        {"containerPort": 81},
    ]
    config = podconfig.sandbox_config(p, [], "cluster.local")
    assert [(m.container_port, m.host_port, m.protocol) for m in config.port_mappings] == [
        (80, 8080, "TCP")
    ]
    assert config.host_aliases == {"10.0.0.5": ["db"]}
    assert (config.uid, config.name, config.namespace) == ("u1", "p", "ns")


def test_resources_become_cgroup_figures():
    res = podconfig.resources(
        {"resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "1", "memory": "64Mi"}}}
    )
    assert (res.cpu_shares, res.cpu_quota, res.memory_limit) == (256, 100_000, 64 * 1024 * 1024)
    best_effort = podconfig.resources({})
    assert (best_effort.cpu_shares, best_effort.cpu_quota, best_effort.memory_limit) == (
        2,
        None,
        None,
    )


def test_security_context_container_over_pod():
    p = pod(securityContext={"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000})
    sc = podconfig.security(
        p,
        {
            "securityContext": {
                "runAsUser": 0,
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            }
        },
    )
    assert (sc.run_as_user, sc.run_as_group, sc.supplemental_groups) == (0, 3000, [2000])
    assert sc.no_new_privs and sc.read_only_root_filesystem and sc.seccomp == "RuntimeDefault"
    assert (sc.capabilities_add, sc.capabilities_drop) == (["NET_ADMIN"], ["ALL"])


def test_mounts_with_sub_path_and_missing_volumes():
    mounts = podconfig.mounts(
        {"volumeMounts": [{"name": "v", "mountPath": "/data", "subPath": "a/b", "readOnly": True}]},
        {"v": "/host/v"},
    )
    assert [(m.host_path, m.container_path, m.readonly) for m in mounts] == [
        ("/host/v/a/b", "/data", True)
    ]
    expr = {"volumeMounts": [{"name": "v", "mountPath": "/d", "subPathExpr": "$(POD)/logs"}]}
    assert podconfig.mounts(expr, {"v": "/host/v"}, {"POD": "p1"})[0].host_path == "/host/v/p1/logs"
    with pytest.raises(ContainerConfigError):
        podconfig.mounts({"volumeMounts": [{"name": "x", "mountPath": "/x"}]}, {})
    with pytest.raises(ContainerConfigError):
        podconfig.mounts(
            {"volumeMounts": [{"name": "v", "mountPath": "/x", "subPath": "../e"}]}, {"v": "/h"}
        )


def test_expansion_and_command_resolution():
    assert podconfig.expand("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"
    image = ImageConfig(entrypoint=["/entry"], cmd=["default"], env=["PATH=/bin", "X=img"])
    p = pod()
    c = {"name": "c", "image": "busybox", "args": ["--name=$(X)"]}
    config = podconfig.container_config(p, c, ["/l"], image, {"X": "mine"}, {}, attempt=3)
    assert config.command == ["/entry", "--name=mine"]
    assert config.env == {"PATH": "/bin", "X": "mine"}
    assert config.attempt == 3 and config.annotations[podconfig.ANNOTATION_RESTART_COUNT] == "3"
    assert config.labels[podconfig.LABEL_POD_UID] == "u1"
    c = {"name": "c", "image": "busybox", "command": ["sh"]}
    assert podconfig.container_config(p, c, [], image, {}, {}, 0).command == ["sh"]


def test_downward_api_values():
    ctx = PodContext(pod_ip="10.0.0.2", host_ip="192.168.1.1", node_allocatable={"cpu": "2"})
    p = pod()
    assert podconfig.field_value(p, "metadata.labels['app']", ctx) == "web"
    assert podconfig.field_value(p, "status.podIP", ctx) == "10.0.0.2"
    assert podconfig.field_value(p, "spec.nodeName", ctx) == "n1"
    assert (
        podconfig.resource_value(p, {}, {"resource": "limits.cpu", "divisor": "1m"}, ctx) == "2000"
    )
    c = {"resources": {"requests": {"memory": "100Mi"}}}
    assert (
        podconfig.resource_value(p, c, {"resource": "requests.memory", "divisor": "1Mi"}, ctx)
        == "100"
    )


@pytest.fixture
async def client() -> AsyncIterator[InProcessClient]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server, runner = await start(APIServerConfig(store=MemoryStore(), port=port))
    try:
        yield InProcessClient(server.resources, patching.patch)
    finally:
        await server.cache.stop()
        await runner.cleanup()


async def test_env_errors_and_optional_references(client):
    await client.create(
        CONFIG_MAP,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cm"},
            "data": {"a": "1", "1abc": "x"},
        },
        "default",
    )
    p = pod()
    p["metadata"]["namespace"] = "default"
    ctx = PodContext()

    def ref(name: str, key: str, optional: bool = False) -> dict:
        return {
            "name": "V",
            "valueFrom": {"configMapKeyRef": {"name": name, "key": key, "optional": optional}},
        }

    assert await podconfig.resolve_env(client, p, {"env": [ref("cm", "a")]}, ctx) == {"V": "1"}
    with pytest.raises(ContainerConfigError, match="couldn't find key b in ConfigMap default/cm"):
        await podconfig.resolve_env(client, p, {"env": [ref("cm", "b")]}, ctx)
    with pytest.raises(ContainerConfigError, match='configmap "nope" not found'):
        await podconfig.resolve_env(client, p, {"env": [ref("nope", "a")]}, ctx)
    assert await podconfig.resolve_env(client, p, {"env": [ref("nope", "a", True)]}, ctx) == {}
    env = await podconfig.resolve_env(
        client, p, {"envFrom": [{"configMapRef": {"name": "cm"}}]}, ctx
    )
    assert env == {"a": "1"}  # "1abc" is not a valid variable name: skipped

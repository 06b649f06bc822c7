"""CNI invocation against Debian's real plugins (root and containernetworking-plugins).

Aspects: the conflist the agent writes; ADD wires eth0 and lo in the namespace and
reserves an IP; CHECK; DEL releases the IP, is idempotent and works once the namespace
is gone; hostPort mappings become DNAT rules and go away on DEL; leftover reservations
after a crash are listed and released; plugin errors surface as `CNIError`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nanokube.network.cni import CNI, CNIError, NetworkConfig, build_conflist

BRIDGE = "nkt1"
SUBNET = "10.199.1.0/24"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "CNI tests need root"
    if not os.path.exists("/usr/lib/cni/bridge"):
        return "CNI tests need containernetworking-plugins in /usr/lib/cni"
    return None


def config_for(tmp_path: Path) -> NetworkConfig:
    return NetworkConfig(
        subnet=SUBNET,
        name="nkcnitest",
        bridge=BRIDGE,
        conf_dir=str(tmp_path / "conf"),
        data_dir=str(tmp_path / "data"),
    )


@pytest.fixture(scope="module")
def bridge() -> Iterator[str]:
    yield BRIDGE
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)


@pytest.fixture
def cni(tmp_path: Path, bridge: str) -> CNI:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    plugins = CNI(config_for(tmp_path))
    plugins.write_conflist()
    return plugins


@pytest.fixture
def netns(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"nkcni-{os.getpid()}-{request.node.name[-20:]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield f"/run/netns/{name}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def in_netns(netns: str, *cmd: str) -> str:
    return subprocess.run(
        ["nsenter", f"--net={netns}", *cmd], check=True, capture_output=True, text=True
    ).stdout


def test_conflist_is_bridge_then_portmap(tmp_path: Path):
    conflist = build_conflist(config_for(tmp_path))
    bridge, portmap = conflist["plugins"]
    assert (bridge["type"], bridge["bridge"], bridge["isGateway"]) == ("bridge", BRIDGE, True)
    assert bridge["ipam"]["ranges"] == [[{"subnet": SUBNET, "gateway": "10.199.1.1"}]]
    assert bridge["ipam"]["dataDir"] == str(tmp_path / "data" / "networks")
    assert portmap == {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}}
    written = CNI(config_for(tmp_path)).write_conflist()
    assert json.loads(written.read_text()) == conflist


async def test_add_check_delete(cni: CNI, netns: str):
    attachment = await cni.add("pod-a", netns, args={"K8S_POD_NAME": "a"})
    (ip,) = attachment.ips
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(SUBNET)
    assert f"inet {ip}/24" in in_netns(netns, "ip", "-o", "-4", "addr", "show", "eth0")
    assert "UP" in in_netns(netns, "ip", "-o", "link", "show", "lo")
    assert cni.leftover_reservations() == {ip: "pod-a"}
    await cni.check("pod-a", netns)
    await cni.delete("pod-a", netns)
    assert cni.leftover_reservations() == {}
    assert cni.cached_ids() == []
    await cni.delete("pod-a", netns)  # idempotent


async def test_delete_after_namespace_is_gone_releases_ip(cni: CNI, netns: str):
    await cni.add("pod-b", netns)
    subprocess.run(["ip", "netns", "del", os.path.basename(netns)], check=True)
    await cni.delete("pod-b", netns)
    assert cni.leftover_reservations() == {}


async def test_host_port_becomes_dnat_rule(cni: CNI, netns: str):
    mapping = [{"hostPort": 18081, "containerPort": 80, "protocol": "tcp"}]
    (ip,) = (await cni.add("pod-c", netns, mapping)).ips
    rules = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True)
    assert f"--to-destination {ip}:80" in rules.stdout
    await cni.delete("pod-c", netns)
    rules = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True)
    assert f"--to-destination {ip}:80" not in rules.stdout


async def test_leftover_reservation_after_crash_is_released(cni: CNI, netns: str, tmp_path: Path):
    await cni.add("pod-d", netns)
    (tmp_path / "data" / "results" / "pod-d").unlink()  # as if the agent died before caching
    assert list(cni.leftover_reservations().values()) == ["pod-d"]
    await cni.delete("pod-d", None)
    assert cni.leftover_reservations() == {}


async def test_plugin_failure_raises(cni: CNI, tmp_path: Path):
    with pytest.raises(CNIError, match="no such file|netns|failed"):
        await cni.add("pod-e", str(tmp_path / "no-such-netns"))
    assert cni.leftover_reservations() == {}
    missing = CNI(NetworkConfig(plugin_dirs=[str(tmp_path)], data_dir=str(tmp_path / "d")))
    with pytest.raises(CNIError, match="plugin not found"):
        await missing.add("pod-f", str(tmp_path / "x"))

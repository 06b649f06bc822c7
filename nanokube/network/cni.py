"""CNI plugin invocation: the pod network of one node (bridge + host-local IPAM + portmap).

nanokube calls the plugin binaries of Debian's ``containernetworking-plugins`` directly,
as libcni does, instead of depending on a CNI library: a plugin is an executable that
reads its network config on stdin and the operation from ``CNI_*`` environment
variables, and prints a JSON result (or a JSON error) on stdout.

The network is a conflist the agent writes (`write_conflist`): ``bridge`` (the node's
bridge, gateway on the bridge, host-local IPAM on the node's pod CIDR), then ``portmap``
for ``hostPort``s. ``loopback`` runs as its own one-plugin network on ``lo``, as
containerd does, because a fresh network namespace has ``lo`` down.

Crash safety: every ADD result is cached on disk before the call returns, DEL uses it
as ``prevResult`` and removes it last, and DEL succeeds when things are already gone
(a missing netns is passed as an empty ``CNI_NETNS``, which makes the bridge plugin
release the IP and stop). `leftover_reservations` lists host-local reservations so the
agent can DEL those of sandboxes it no longer knows after a crash.

``portmap`` is skipped for a sandbox without port mappings (ADD and DEL alike): it would
otherwise run iptables on every pod start and stop for nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CNI_VERSION = "1.0.0"


class CNIError(Exception):
    """A plugin failed; carries the CNI error code and the plugin's message."""

    def __init__(self, plugin: str, command: str, code: int, msg: str, details: str = ""):
        super().__init__(f"CNI {plugin} {command} failed (code {code}): {msg} {details}".strip())
        self.code = code


@dataclass
class NetworkConfig:
    """The node's pod network. Tests use their own bridge, subnet and directories so
    they never touch a running agent's network."""

    subnet: str = "10.42.0.0/24"
    name: str = "nanokube"
    bridge: str = "nk0"
    ip_masq: bool = False
    """Off by default: the bridge plugin would add iptables rules per pod; the service
    proxy masquerades the whole pod CIDR with one nftables rule instead."""
    mtu: int = 0
    plugin_dirs: list[str] = field(default_factory=lambda: ["/usr/lib/cni", "/opt/cni/bin"])
    conf_dir: str = "/etc/nanokube/cni"
    data_dir: str = "/var/lib/nanokube/cni"
    """Holds host-local's reservations (``networks/``) and cached ADD results."""


@dataclass
class Attachment:
    """Result of attaching a sandbox: its IPs and the raw CNI result."""

    ips: list[str]
    result: dict[str, Any]


def build_conflist(config: NetworkConfig) -> dict[str, Any]:
    net = ipaddress.ip_network(config.subnet)
    bridge: dict[str, Any] = {
        "type": "bridge",
        "bridge": config.bridge,
        "isGateway": True,
        "ipMasq": config.ip_masq,
        "hairpinMode": True,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": str(net), "gateway": str(net.network_address + 1)}]],
            "routes": [{"dst": "0.0.0.0/0" if net.version == 4 else "::/0"}],
            "dataDir": os.path.join(config.data_dir, "networks"),
        },
    }
    if config.mtu:
        bridge["mtu"] = config.mtu
    portmap = {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}}
    return {"cniVersion": CNI_VERSION, "name": config.name, "plugins": [bridge, portmap]}


_LOOPBACK = {"cniVersion": CNI_VERSION, "name": "loopback", "type": "loopback"}


class CNI:
    """Attach and detach sandboxes to the node's network."""

    def __init__(self, config: NetworkConfig) -> None:
        self.config = config
        self.conflist = build_conflist(config)
        self._results = Path(config.data_dir) / "results"

    def write_conflist(self) -> Path:
        """Write the conflist (for humans and other tools; calls use the in-memory copy)."""
        path = Path(self.config.conf_dir) / f"10-{self.config.name}.conflist"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._results.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.conflist, indent=2))
        tmp.rename(path)
        return path

    async def add(
        self,
        container_id: str,
        netns: str,
        port_mappings: list[dict[str, Any]] | None = None,
        args: dict[str, str] | None = None,
    ) -> Attachment:
        """ADD loopback, then the conflist's plugins in order; on failure undo with DEL.

        `port_mappings` use CNI's portMappings capability keys: ``hostPort``,
        ``containerPort``, ``protocol`` (lowercase), ``hostIP``.
        """
        await self._exec(_LOOPBACK, "ADD", container_id, netns, "lo", args)
        runtime_config = {"portMappings": port_mappings or []}
        prev: dict[str, Any] | None = None
        try:
            for plugin in self._plugins(bool(port_mappings)):
                conf = self._plugin_conf(plugin, runtime_config, prev)
                prev = await self._exec(conf, "ADD", container_id, netns, "eth0", args)
        except BaseException:
            await self.delete(container_id, netns, port_mappings, args)
            raise
        assert prev is not None
        self._cache_write(container_id, {"result": prev, "portMappings": port_mappings or []})
        ips = [ip["address"].split("/")[0] for ip in prev.get("ips", [])]
        return Attachment(ips=ips, result=prev)

    async def check(
        self, container_id: str, netns: str, args: dict[str, str] | None = None
    ) -> None:
        """CHECK the attachment against the cached ADD result; raises `CNIError`.

        portmap is left out: its CHECK (1.1.1) always looks for IPv6 rules and fails on an
        IPv4-only pod (containernetworking/plugins#819)."""
        cached = self._cache_read(container_id)
        if cached is None:
            raise CNIError("cache", "CHECK", 0, f"no cached result for {container_id}")
        runtime_config = {"portMappings": cached["portMappings"]}
        for plugin in self._plugins(False):
            conf = self._plugin_conf(plugin, runtime_config, cached["result"])
            await self._exec(conf, "CHECK", container_id, netns, "eth0", args)

    async def delete(
        self,
        container_id: str,
        netns: str | None,
        port_mappings: list[dict[str, Any]] | None = None,
        args: dict[str, str] | None = None,
    ) -> None:
        """DEL in reverse order; idempotent. Pass ``netns=None`` when the namespace is gone."""
        cached = self._cache_read(container_id)
        if cached is not None:
            port_mappings = cached["portMappings"]
        runtime_config = {"portMappings": port_mappings or []}
        prev = cached["result"] if cached else None
        if netns is not None and not os.path.exists(netns):
            netns = None
        for plugin in reversed(self._plugins(bool(port_mappings))):
            conf = self._plugin_conf(plugin, runtime_config, prev)
            await self._exec(conf, "DEL", container_id, netns or "", "eth0", args)
        (self._results / container_id).unlink(missing_ok=True)

    def leftover_reservations(self) -> dict[str, str]:
        """host-local reservations of this network: IP -> container id."""
        net_dir = Path(self.config.data_dir) / "networks" / self.config.name
        found: dict[str, str] = {}
        if not net_dir.is_dir():
            return found
        for entry in net_dir.iterdir():
            try:
                ipaddress.ip_address(entry.name)
            except ValueError:
                continue  # "lock", "last_reserved_ip.0"
            owner = entry.read_text().splitlines()
            found[entry.name] = owner[0].strip() if owner else ""
        return found

    def cached_ids(self) -> list[str]:
        """Container ids with a cached ADD result (attached, or not yet cleanly DELeted)."""
        if not self._results.is_dir():
            return []
        return [p.name for p in self._results.iterdir() if not p.name.endswith(".tmp")]

    def _plugins(self, with_portmap: bool) -> list[dict[str, Any]]:
        plugins: list[dict[str, Any]] = self.conflist["plugins"]
        return [p for p in plugins if with_portmap or p["type"] != "portmap"]

    def _plugin_conf(
        self, plugin: dict[str, Any], runtime_config: dict[str, Any], prev: dict[str, Any] | None
    ) -> dict[str, Any]:
        """libcni's per-plugin config: name and version from the list, the runtime values
        the plugin declared as capabilities, and the previous plugin's result."""
        conf = {"cniVersion": CNI_VERSION, "name": self.config.name, **plugin}
        caps = conf.pop("capabilities", {})
        wanted = {k: v for k, v in runtime_config.items() if caps.get(k)}
        if wanted:
            conf["runtimeConfig"] = wanted
        if prev is not None:
            conf["prevResult"] = prev
        return conf

    def _find_plugin(self, name: str) -> str:
        for d in self.config.plugin_dirs:
            path = os.path.join(d, name)
            if os.access(path, os.X_OK):
                return path
        raise CNIError(name, "find", 0, f"plugin not found in {self.config.plugin_dirs}")

    async def _exec(
        self,
        conf: dict[str, Any],
        command: str,
        container_id: str,
        netns: str,
        ifname: str,
        args: dict[str, str] | None,
    ) -> dict[str, Any]:
        plugin = conf["type"]
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": os.pathsep.join(self.config.plugin_dirs),
        }
        if args:
            # IgnoreUnknown: plugins reject K8S_POD_* otherwise (what containerd passes).
            pairs = {"IgnoreUnknown": "1", **args}
            env["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in pairs.items())
        proc = await asyncio.create_subprocess_exec(
            self._find_plugin(plugin),
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(json.dumps(conf).encode())
        if proc.returncode != 0:
            try:
                error = json.loads(out)
            except ValueError:
                error = {"code": 999, "msg": (out or err).decode(errors="replace").strip()}
            raise CNIError(
                plugin,
                command,
                error.get("code", 999),
                error.get("msg", ""),
                error.get("details", ""),
            )
        log.debug("cni %s %s id=%s netns=%s", plugin, command, container_id, netns)
        if command != "ADD":
            return {}
        result: dict[str, Any] = json.loads(out) if out.strip() else {}
        return result

    def _cache_write(self, container_id: str, data: dict[str, Any]) -> None:
        self._results.mkdir(parents=True, exist_ok=True)
        tmp = self._results / f"{container_id}.tmp"
        tmp.write_text(json.dumps(data))
        tmp.rename(self._results / container_id)

    def _cache_read(self, container_id: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self._results / container_id).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data

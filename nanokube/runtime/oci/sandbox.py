"""The per-pod files every container of a sandbox shares.

``/etc/hosts``, ``/etc/resolv.conf`` and ``/etc/hostname`` are written once per sandbox
and bind-mounted into each container (what the kubelet does with its
``etc-hosts`` file), so all containers of a pod agree and the image's own files are
shadowed rather than modified.
"""

from __future__ import annotations

import os
import socket

from nanokube.runtime.contract import DNSConfig, SandboxConfig

HOST_RESOLV_CONF = "/etc/resolv.conf"
HOST_HOSTS = "/etc/hosts"

_HOSTS_HEADER = """# Kubernetes-managed hosts file.
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
fe00::0\tip6-mcastprefix
fe00::1\tip6-allnodes
fe00::2\tip6-allrouters
"""


def pod_hostname(config: SandboxConfig) -> str:
    """The pod's hostname: ``spec.hostname`` or the pod name, at most 63 characters
    (the kubelet truncates and strips trailing ``-``/``.``); the node's for hostNetwork."""
    if config.host_network:
        return socket.gethostname()
    name = (config.hostname or config.name)[:63]
    return name.rstrip("-.") or name


def hosts_file(config: SandboxConfig, ip: str, hostname: str) -> str:
    if config.host_network:
        with open(HOST_HOSTS) as f:
            text = f.read()
    else:
        text = _HOSTS_HEADER + (f"{ip}\t{hostname}\n" if ip else "")
    if config.host_aliases:
        text += "\n# Entries added by HostAliases.\n"
        for alias_ip, names in config.host_aliases.items():
            text += f"{alias_ip}\t{chr(9).join(names)}\n"
    return text


def resolv_conf(dns: DNSConfig | None) -> str:
    if dns is None:
        try:
            with open(HOST_RESOLV_CONF) as f:
                return f.read()
        except FileNotFoundError:
            return ""
    lines = [f"nameserver {ns}" for ns in dns.nameservers]
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n"


def write_files(directory: str, config: SandboxConfig, ip: str, hostname: str) -> dict[str, str]:
    """Write the files; return container path -> host path for the bind mounts."""
    contents = {
        "/etc/hosts": hosts_file(config, ip, hostname),
        "/etc/resolv.conf": resolv_conf(config.dns),
        "/etc/hostname": hostname + "\n",
    }
    files = {}
    for dest, text in contents.items():
        path = os.path.join(directory, os.path.basename(dest))
        with open(path, "w") as f:
            f.write(text)
        files[dest] = path
    return files

"""The admin kubeconfig that `nanokube server` writes for kubectl and client libraries.

One cluster, user and context, all named `default` (as k3s names them), with
the CA, client certificate and key embedded as base64 PEM, so the file works
when copied to another machine. It is written on every start (the admin
certificate may have been renewed), atomically and with mode 0600, since it
holds the admin key.

The YAML is formatted here rather than with PyYAML: every value is a JSON
string, which is valid YAML, and `nanokube server` starts without importing
a YAML library.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import stat
from pathlib import Path

from nanokube.cli.files import write_private

DEFAULT_PATH = Path("/etc/nanokube/kubeconfig.yaml")
NAME = "default"


def server_url(bind_address: str, port: int) -> str:
    """The URL a client on this machine should dial for a server bound to `bind_address`.

    Wildcard and loopback binds are reached on 127.0.0.1 (as k3s writes it);
    any other address or host name is used as given.
    """
    host = bind_address or "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"https://{host}:{port}"
    if ip.is_unspecified or (ip.is_loopback and ip.version == 4):
        return f"https://127.0.0.1:{port}"
    return f"https://[{ip}]:{port}" if ip.version == 6 else f"https://{ip}:{port}"


def render(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> str:
    """The kubeconfig text: cluster, user and context `default`, PEMs embedded."""

    def q(value: str) -> str:
        return json.dumps(value)

    def b64(pem: bytes) -> str:
        return q(base64.b64encode(pem).decode())

    return f"""apiVersion: v1
kind: Config
clusters:
- name: {NAME}
  cluster:
    server: {q(server)}
    certificate-authority-data: {b64(ca_pem)}
users:
- name: {NAME}
  user:
    client-certificate-data: {b64(cert_pem)}
    client-key-data: {b64(key_pem)}
contexts:
- name: {NAME}
  context:
    cluster: {NAME}
    user: {NAME}
current-context: {NAME}
preferences: {{}}
"""


def write(paths: list[Path], server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> None:
    """Write the same kubeconfig to each of `paths` (creating parent directories), mode 0600.

    A file that already holds exactly this text with mode 0600 is left alone:
    most starts change nothing, and an fsync per file would slow them.
    """
    text = render(server, ca_pem, cert_pem, key_pem).encode()
    for path in paths:
        path = Path(path)
        if _holds(path, text):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, text)


def _holds(path: Path, text: bytes) -> bool:
    try:
        return stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == text
    except OSError:
        return False

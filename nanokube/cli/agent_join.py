"""How `nanokube agent` joins a cluster: from a join token to node certificates.

k3s's flow, over nanokube's endpoints (see `nanokube.apiserver.tokens_nodecert`):

1. GET `SERVER/cacerts` without verifying TLS; with a `K10<hash>::...` token,
   the sha256 of the answer must equal the hash, else the join stops (someone
   else answered). A bare-secret token trusts the first answer, as k3s does.
2. Make two EC P-256 keys (client and serving), POST their CSRs with the
   token and the node name to `/v1-nanokube/node-cert`, over TLS verified by
   that CA now.
3. Write everything under `DATA_DIR/agent/tls/` (keys 0600, atomically) and
   the agent's kubeconfig `DATA_DIR/agent/kubelet.kubeconfig`, so a later
   start reuses them without the token until they come near expiry.
"""

from __future__ import annotations

import datetime
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nanokube.apiserver import tokens
from nanokube.apiserver.tokens_nodecert import CACERTS_PATH, NODE_CERT_PATH
from nanokube.cli import kubeconfig
from nanokube.cli.files import write_private

log = logging.getLogger(__name__)

# Renew node certificates this close to expiry (as the cluster's own, `certs.RENEW_BEFORE`).
RENEW_BEFORE = datetime.timedelta(days=90)
_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)


class JoinError(Exception):
    """The agent could not join; the message says why and what to check."""


@dataclass(frozen=True)
class NodeCredentials:
    """The files a joined agent uses (all PEM)."""

    dir: Path

    @property
    def client_cert(self) -> Path:
        return self.dir / "client-kubelet.crt"

    @property
    def client_key(self) -> Path:
        return self.dir / "client-kubelet.key"

    @property
    def serving_cert(self) -> Path:
        return self.dir / "serving-kubelet.crt"

    @property
    def serving_key(self) -> Path:
        return self.dir / "serving-kubelet.key"

    @property
    def server_ca(self) -> Path:
        return self.dir / "server-ca.crt"

    @property
    def client_ca(self) -> Path:
        return self.dir / "client-ca.crt"

    def files(self) -> list[Path]:
        return [
            self.client_cert,
            self.client_key,
            self.serving_cert,
            self.serving_key,
            self.server_ca,
            self.client_ca,
        ]


def credentials_valid(creds: NodeCredentials, node_name: str) -> bool:
    """Whether the files exist, name this node, and are not near expiry."""
    if not all(p.exists() for p in creds.files()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(creds.client_cert.read_bytes())
        serving = x509.load_pem_x509_certificate(creds.serving_cert.read_bytes())
    except ValueError:
        return False
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cn or cn[0].value != tokens.NODE_USER_PREFIX + node_name:
        return False
    now = datetime.datetime.now(datetime.UTC)
    return all(c.not_valid_after_utc - now > RENEW_BEFORE for c in (cert, serving))


def csr(key: ec.EllipticCurvePrivateKey, common_name: str) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


async def fetch_ca(server: str, token: tokens.JoinToken) -> bytes:
    """The server CA, checked against the token's hash (when it has one)."""
    url = server.rstrip("/") + CACERTS_PATH
    try:
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
            async with session.get(url, ssl=False) as resp:
                if resp.status != 200:
                    raise JoinError(f"GET {url}: HTTP {resp.status}")
                ca_pem = await resp.read()
    except aiohttp.ClientError as e:
        raise JoinError(f"cannot reach the server at {server}: {e}") from e
    if token.ca_hash and tokens.ca_hash(ca_pem) != token.ca_hash:
        raise JoinError(
            f"the CA served by {server} does not match the token's CA hash: "
            "wrong server, or a token of another cluster"
        )
    if not token.ca_hash:
        log.warning("the token has no CA hash: trusting the CA the server sent server=%s", server)
    try:
        x509.load_pem_x509_certificate(ca_pem)
    except ValueError as e:
        raise JoinError(f"{url} did not return a PEM certificate") from e
    return ca_pem


async def join(
    server: str,
    token_text: str,
    node_name: str,
    addresses: list[str],
    tls_dir: Path,
) -> NodeCredentials:
    """Obtain (or reuse) this node's certificates; raises `JoinError`."""
    creds = NodeCredentials(Path(tls_dir))
    if credentials_valid(creds, node_name):
        return creds
    if not token_text:
        raise JoinError(f"no valid node certificates under {tls_dir} and no --token to get them")
    try:
        token = tokens.parse_token(token_text)
    except tokens.TokenFormatError as e:
        raise JoinError(f"invalid --token: {e}") from e
    ca_pem = await fetch_ca(server, token)
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    client_key = ec.generate_private_key(ec.SECP256R1())
    serving_key = ec.generate_private_key(ec.SECP256R1())
    body = {
        "nodeName": node_name,
        "clientCSR": csr(client_key, tokens.NODE_USER_PREFIX + node_name).decode(),
        "servingCSR": csr(serving_key, node_name).decode(),
        "addresses": addresses,
    }
    headers = {
        "Authorization": f"Bearer {token_text.strip()}",
        tokens.NODE_NAME_HEADER: node_name,
        "Content-Type": "application/json",
    }
    url = server.rstrip("/") + NODE_CERT_PATH
    try:
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
            async with session.post(url, data=orjson.dumps(body), headers=headers, ssl=ctx) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise JoinError(f"POST {url}: HTTP {resp.status}: {_message(raw)}")
    except aiohttp.ClientError as e:
        raise JoinError(f"cannot reach the server at {server}: {e}") from e
    issued = orjson.loads(raw)
    creds.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(creds.client_key, key_pem(client_key))
    write_private(creds.serving_key, key_pem(serving_key))
    write_private(creds.client_cert, issued["clientCertificate"].encode(), mode=0o644)
    write_private(creds.serving_cert, issued["servingCertificate"].encode(), mode=0o644)
    write_private(creds.server_ca, issued["serverCA"].encode(), mode=0o644)
    write_private(creds.client_ca, issued["clientCA"].encode(), mode=0o644)
    log.info("joined the cluster server=%s node=%s", server, node_name)
    return creds


def write_kubeconfig(path: Path, server: str, creds: NodeCredentials) -> None:
    """The agent's kubeconfig (for `kubectl --kubeconfig` as the node, and debugging)."""
    kubeconfig.write(
        [path],
        server,
        creds.server_ca.read_bytes(),
        creds.client_cert.read_bytes(),
        creds.client_key.read_bytes(),
    )


def _message(raw: bytes) -> str:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body)
    return str(body)

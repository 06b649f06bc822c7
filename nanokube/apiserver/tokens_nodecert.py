"""Node certificates for joining agents: k3s's `/v1-k3s/client-kubelet.crt`, nanokube's way.

A joining agent holds only the join token (`tokens`). It

1. GETs `/cacerts` (anonymous, like k3s's) without verifying TLS, and checks
   the sha256 of what it got against the hash inside a `K10` token: from then
   on it trusts that CA;
2. makes two keys of its own and POSTs certificate signing requests to
   `/v1-nanokube/node-cert`, authenticated by the token (and its node name in
   the `Nanokube-Node-Name` header):

       {"nodeName": "n1", "clientCSR": PEM, "servingCSR": PEM,
        "addresses": ["10.0.0.5", "n1"]}

3. gets back a client certificate signed by the client CA with CN
   `system:node:<name>` and O `system:nodes` (the subject of the CSR is
   ignored: the server decides who the node is), a serving certificate for
   its streaming server signed by the server CA with the node name and
   addresses as SANs (so the API server can verify the kubelet), and both CAs:

       {"clientCertificate": PEM, "servingCertificate": PEM,
        "serverCA": PEM, "clientCA": PEM}

The private keys never leave the agent. A node that already has a client
certificate may renew through the same endpoint with that certificate instead
of the token. A token whose node name header names another node is refused
(403): one node cannot obtain another's identity with its own header.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from nanokube.api import errors
from nanokube.apiserver import codec
from nanokube.apiserver.tokens import (
    BOOTSTRAPPERS_GROUP,
    NODE_USER_PREFIX,
    NODES_GROUP,
    TokenAuthenticator,
    User,
    node_name_of,
    valid_node_name,
)

if TYPE_CHECKING:
    from cryptography import x509

log = logging.getLogger(__name__)

NODE_CERT_PATH = "/v1-nanokube/node-cert"
CACERTS_PATH = "/cacerts"
# Paths a joining agent reaches before it has any credential the middleware knows.
ANONYMOUS_PATHS = frozenset({CACERTS_PATH})
VALIDITY = datetime.timedelta(days=365)

PathPair = tuple[Path, Path]


@dataclass
class IssuedCerts:
    client_certificate: bytes
    serving_certificate: bytes
    server_ca: bytes
    client_ca: bytes

    def to_json(self) -> dict[str, str]:
        return {
            "clientCertificate": self.client_certificate.decode(),
            "servingCertificate": self.serving_certificate.decode(),
            "serverCA": self.server_ca.decode(),
            "clientCA": self.client_ca.decode(),
        }


class NodeCertIssuer:
    """Signs node CSRs with the cluster's CAs (their files are read on each request,
    so a CA renewed on disk is picked up without a restart)."""

    def __init__(
        self,
        server_ca: PathPair,
        client_ca: PathPair,
        authenticator: TokenAuthenticator | None = None,
    ) -> None:
        self.server_ca = server_ca
        self.client_ca = client_ca
        self.authenticator = authenticator

    def issue(
        self,
        node_name: str,
        client_csr: bytes,
        serving_csr: bytes | None = None,
        addresses: list[str] | None = None,
    ) -> IssuedCerts:
        """Certificates for node `node_name` from its CSRs; BadRequest for a bad CSR."""
        from cryptography import x509  # imported when signing: start-up stays fast
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        if not valid_node_name(node_name):
            raise errors.BadRequest(f"invalid node name {node_name!r}")
        client_subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODES_GROUP),
                x509.NameAttribute(NameOID.COMMON_NAME, NODE_USER_PREFIX + node_name),
            ]
        )
        client_ca_pem = self.client_ca[0].read_bytes()
        server_ca_pem = self.server_ca[0].read_bytes()
        client = _sign(
            _load_csr(client_csr),
            client_subject,
            self.client_ca,
            ExtendedKeyUsageOID.CLIENT_AUTH,
            [],
        )
        serving = b""
        if serving_csr:
            sans = sorted({node_name, *(a for a in addresses or () if a)})
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_name)])
            serving = _sign(
                _load_csr(serving_csr),
                subject,
                self.server_ca,
                ExtendedKeyUsageOID.SERVER_AUTH,
                sans,
            )
        log.info("issued node certificates node=%s serving=%s", node_name, bool(serving))
        return IssuedCerts(client, serving, server_ca_pem, client_ca_pem)

    def _requester(self, request: web.Request) -> User:
        user = self.authenticator.authenticate(request.headers) if self.authenticator else None
        if user is not None:
            return user
        cert = request.transport.get_extra_info("peercert") if request.transport else None
        if cert:
            names = [(k, v) for rdn in cert.get("subject", ()) for k, v in rdn]
            cn = next((v for k, v in names if k == "commonName"), "")
            groups = [v for k, v in names if k == "organizationName"]
            return {"username": cn, "groups": groups}
        raise errors.Unauthorized("Unauthorized")

    async def handle(self, request: web.Request) -> web.Response:
        user = self._requester(request)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as e:
            raise errors.BadRequest(f"the body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise errors.BadRequest("the body must be a JSON object")
        node_name = str(body.get("nodeName") or "")
        own = node_name_of(user)
        is_bootstrapper = BOOTSTRAPPERS_GROUP in (user.get("groups") or ())
        if own != node_name and not is_bootstrapper:
            raise errors.Forbidden(
                f'user "{user.get("username")}" may not obtain certificates for node "{node_name}"'
            )
        issued = self.issue(
            node_name,
            str(body.get("clientCSR") or "").encode(),
            str(body.get("servingCSR") or "").encode() or None,
            [str(a) for a in body.get("addresses") or ()],
        )
        return codec.json_response(issued.to_json())

    async def cacerts(self, request: web.Request) -> web.Response:
        return web.Response(body=self.server_ca[0].read_bytes(), content_type="text/plain")


def register(app: web.Application, issuer: NodeCertIssuer) -> None:
    """Serve `/cacerts` and `/v1-nanokube/node-cert` on `app` (before it starts)."""
    app.router.add_get(CACERTS_PATH, issuer.cacerts)
    app.router.add_post(NODE_CERT_PATH, issuer.handle)


def _load_csr(pem: bytes) -> x509.CertificateSigningRequest:
    from cryptography import x509  # imported when signing: start-up stays fast

    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as e:
        raise errors.BadRequest(f"not a PEM certificate signing request: {e}") from None
    if not csr.is_signature_valid:
        raise errors.BadRequest("the certificate signing request's signature is invalid")
    return csr


def _load_ca(paths: PathPair) -> tuple[x509.Certificate, Any]:
    from cryptography import x509  # imported when signing: start-up stays fast
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(paths[0].read_bytes())
    key = serialization.load_pem_private_key(paths[1].read_bytes(), password=None)
    return cert, key


def _sign(
    csr: x509.CertificateSigningRequest,
    subject: x509.Name,
    ca_paths: PathPair,
    usage: x509.ObjectIdentifier,
    sans: list[str],
) -> bytes:
    from cryptography.hazmat.primitives import serialization  # imported when signing

    from nanokube.apiserver import pki  # imports cryptography: start-up stays fast

    cert = pki.sign_leaf(
        subject,
        csr.public_key(),
        _load_ca(ca_paths),
        usage,
        sans,
        VALIDITY,
        datetime.datetime.now(datetime.UTC),
    )
    return cert.public_bytes(serialization.Encoding.PEM)

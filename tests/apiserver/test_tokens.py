"""Join tokens, bearer-token authentication and node certificates, over a real HTTPS server.

Aspects: the k3s token format (K10 + CA hash, short form, bad input); the
server's token file (created once with mode 0600, reused, `--token` wins, the
CA hash follows the CA); the authenticator (a valid token with a node name is
that node, without one a bootstrapper, a bad token or a foreign CA hash is
401, no token is left to others); and over HTTPS with the authenticator wired
into the server's middleware: API requests by token, `/cacerts` anonymous,
`/v1-nanokube/node-cert` issuing certificates from CSRs (subject decided by
the server, serving SANs, CAs) and refusing other nodes' names, bad CSRs and
bad tokens.
"""

from __future__ import annotations

import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from support import free_port

from nanokube.api import errors
from nanokube.apiserver import server as apiserver
from nanokube.apiserver import tokens, tokens_nodecert
from nanokube.apiserver.tokens import JoinToken, TokenAuthenticator, parse_token
from nanokube.cli import certs
from nanokube.storage.memory import MemoryStore

HASH = "ab" * 32


# --- format and file ----------------------------------------------------------------


def test_parse_token_forms() -> None:
    full = parse_token(f"K10{HASH}::server:s3cret\n")
    assert full == JoinToken(secret="s3cret", ca_hash=HASH, username="server")
    assert str(full) == f"K10{HASH}::server:s3cret"
    assert parse_token(f"K10{HASH}::s3cret") == JoinToken("s3cret", HASH)
    assert parse_token("s3cret") == JoinToken("s3cret")
    for bad in ("", "K10abc::server:x", f"K10{HASH}::server:", "two words"):
        with pytest.raises(tokens.TokenFormatError):
            parse_token(bad)


def test_token_file(tmp_path: Path) -> None:
    ca = b"-----BEGIN CERTIFICATE-----\nfirst\n"
    first = tokens.ensure_token_file(tmp_path, ca)
    path = tmp_path / "token"
    assert path.read_text() == f"{first}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.ca_hash == tokens.ca_hash(ca) and len(first.secret) == 32
    assert tokens.ensure_token_file(tmp_path, ca) == first  # reused
    moved = tokens.ensure_token_file(tmp_path, b"another CA")
    assert moved.secret == first.secret and moved.ca_hash != first.ca_hash
    given = tokens.ensure_token_file(tmp_path, ca, given="chosen-by-admin")
    assert given.secret == "chosen-by-admin" and parse_token(path.read_text()) == given


# --- the authenticator ------------------------------------------------------------


def test_authenticator() -> None:
    auth = TokenAuthenticator(JoinToken("s3cret", HASH))
    node = auth.authenticate({"Authorization": "Bearer s3cret", "Nanokube-Node-Name": "Node-1"})
    assert node == {
        "username": "system:node:node-1",
        "groups": ["system:nodes", "system:authenticated"],
    }
    full = auth.authenticate({"Authorization": f"Bearer K10{HASH}::server:s3cret"})
    assert full == {
        "username": "system:bootstrap:nanokube",
        "groups": ["system:bootstrappers", "system:authenticated"],
    }
    assert auth.authenticate({}) is None
    assert auth.authenticate({"Authorization": "Basic Zm9vOmJhcg=="}) is None
    for bad in ("Bearer wrong", f"Bearer K10{'cd' * 32}::server:s3cret", "Bearer "):
        with pytest.raises(errors.Unauthorized):
            auth.authenticate({"Authorization": bad})
    with pytest.raises(errors.Unauthorized, match="invalid node name"):
        auth.authenticate({"Authorization": "Bearer s3cret", "Nanokube-Node-Name": "bad_name"})
    assert tokens.node_name_of(node) == "node-1"
    assert tokens.node_name_of(full) == ""


# --- over HTTPS ---------------------------------------------------------------------


@pytest.fixture
async def https(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, JoinToken, certs.ClusterTLS]]:
    """A TLS API server whose middleware also takes bearer tokens (the wiring the lead adds)."""
    tls = certs.ensure_cluster_tls(tmp_path / "tls", certs.serving_sans())
    token = tokens.ensure_token_file(tmp_path, tls.server_ca[0].read_bytes())
    auth = TokenAuthenticator(token)
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
    srv = apiserver.build_app(config)
    tokens_nodecert.register(
        srv.app, tokens_nodecert.NodeCertIssuer(tls.server_ca, tls.client_ca, auth)
    )
    await srv.cache.start()
    runner = aiohttp.web.AppRunner(srv.app, handle_signals=False)
    await runner.setup()
    await aiohttp.web.TCPSite(
        runner, "127.0.0.1", config.port, ssl_context=apiserver.ssl_context(config)
    ).start()
    try:
        yield f"https://127.0.0.1:{config.port}", token, tls
    finally:
        await srv.cache.stop()
        await runner.cleanup()


async def call(
    url: str, tls: certs.ClusterTLS, method: str = "GET", body: Any = None, **headers: str
) -> tuple[int, Any]:
    ctx = ssl.create_default_context(cafile=str(tls.server_ca[0]))
    async with aiohttp.ClientSession() as session:
        data = orjson.dumps(body) if body is not None else None
        async with session.request(method, url, data=data, headers=headers, ssl=ctx) as resp:
            raw = await resp.read()
            try:
                return resp.status, orjson.loads(raw)
            except orjson.JSONDecodeError:
                return resp.status, raw


def csr(common_name: str = "whoever") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    req = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    return req.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


async def test_api_requests_by_token(https: tuple[str, JoinToken, certs.ClusterTLS]) -> None:
    base, token, tls = https
    status, body = await call(
        base + "/api/v1/nodes", tls, Authorization=f"Bearer {token}", **{"Nanokube-Node-Name": "n1"}
    )
    assert status == 200 and body["kind"] == "NodeList"
    status, body = await call(base + "/api/v1/nodes", tls, Authorization="Bearer nope")
    assert status == 401 and body["reason"] == "Unauthorized"
    status, _ = await call(base + "/api/v1/nodes", tls)
    assert status == 401
    status, body = await call(base + "/version", tls, Authorization="Bearer nope")
    assert status == 401  # a bad token is refused even where anonymous users may read
    status, ca = await call(base + "/cacerts", tls)
    assert status == 200 and ca == tls.server_ca[0].read_bytes()
    assert tokens.ca_hash(ca) == token.ca_hash


async def test_node_certificates(https: tuple[str, JoinToken, certs.ClusterTLS]) -> None:
    base, token, tls = https
    url = base + tokens_nodecert.NODE_CERT_PATH
    body = {
        "nodeName": "n1",
        "clientCSR": csr("system:admin").decode(),  # the server decides the subject
        "servingCSR": csr().decode(),
        "addresses": ["10.0.0.5", "n1.example"],
    }
    auth = {"Authorization": f"Bearer {token}", "Nanokube-Node-Name": "n1"}
    status, out = await call(url, tls, "POST", body, **auth)
    assert status == 200, out
    client = x509.load_pem_x509_certificate(out["clientCertificate"].encode())
    assert client.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    client.verify_directly_issued_by(x509.load_pem_x509_certificate(out["clientCA"].encode()))
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    serving = x509.load_pem_x509_certificate(out["servingCertificate"].encode())
    serving.verify_directly_issued_by(x509.load_pem_x509_certificate(out["serverCA"].encode()))
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == ["n1", "n1.example"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert out["serverCA"].encode() == tls.server_ca[0].read_bytes()

    # The token with one node's name cannot get another node's certificates ...
    status, out = await call(url, tls, "POST", {**body, "nodeName": "n2"}, **auth)
    assert status == 403 and out["reason"] == "Forbidden"
    # ... a bootstrapper (no node name) may name any node.
    status, _ = await call(
        url, tls, "POST", {**body, "nodeName": "n2"}, Authorization=f"Bearer {token}"
    )
    assert status == 200
    status, out = await call(url, tls, "POST", {**body, "clientCSR": "junk"}, **auth)
    assert status == 400 and "certificate signing request" in out["message"]
    status, _ = await call(url, tls, "POST", body, Authorization="Bearer wrong")
    assert status == 401
    status, _ = await call(url, tls, "POST", body)
    assert status == 401

"""Cluster certificates: what a first start creates, what later starts reuse or renew,
that the files make a working mutual-TLS handshake, and client certificates for nodes."""

from __future__ import annotations

import asyncio
import os
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nanokube.cli import certs


@pytest.fixture
def tls(tmp_path: Path) -> certs.ClusterTLS:
    return certs.ensure_cluster_tls(tmp_path / "tls", certs.serving_sans("127.0.0.1", "node-a"))


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in ext.get_values_for_type(x509.IPAddress)} | set(
        ext.get_values_for_type(x509.DNSName)
    )


def contents(tls: certs.ClusterTLS) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(tls.dir.iterdir())}


def test_first_start_creates_every_file_with_private_keys(tls: certs.ClusterTLS) -> None:
    names = sorted(p.name for p in tls.dir.iterdir())
    assert names == [
        "client-admin.crt",
        "client-admin.key",
        "client-ca.crt",
        "client-ca.key",
        "client-kube-apiserver-kubelet.crt",
        "client-kube-apiserver-kubelet.key",
        "manifest.json",
        "server-ca.crt",
        "server-ca.key",
        "serving-kube-apiserver.crt",
        "serving-kube-apiserver.key",
    ]
    for path in tls.dir.glob("*.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(tls.dir.stat().st_mode) == 0o700


def test_serving_certificate_names_every_address_a_client_dials(tls: certs.ClusterTLS) -> None:
    cert = load(tls.serving[0])
    assert sans(cert) >= {
        "localhost",
        "127.0.0.1",
        "::1",
        "node-a",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "10.43.0.1",
    }
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    cert.verify_directly_issued_by(load(tls.server_ca[0]))


def test_admin_is_system_masters_signed_by_the_client_ca(tls: certs.ClusterTLS) -> None:
    cert = load(tls.admin[0])
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:admin"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters"
    ]
    cert.verify_directly_issued_by(load(tls.client_ca[0]))
    with pytest.raises(ValueError):
        cert.verify_directly_issued_by(load(tls.server_ca[0]))


def test_later_starts_reuse_the_files(tmp_path: Path, tls: certs.ClusterTLS) -> None:
    before = contents(tls)
    again = certs.ensure_cluster_tls(tls.dir, certs.serving_sans("127.0.0.1", "node-a"))
    assert contents(again) == before


def test_a_vouched_start_does_not_import_cryptography(tls: certs.ClusterTLS) -> None:
    code = (
        "import sys; from nanokube.cli import certs; "
        f"certs.ensure_cluster_tls({str(tls.dir)!r}, certs.serving_sans('127.0.0.1', 'node-a')); "
        "print('cryptography' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "False\n"


def test_a_touched_file_is_checked_again_and_kept(tls: certs.ClusterTLS) -> None:
    before = contents(tls)
    os.utime(tls.serving[0])
    certs.ensure_cluster_tls(tls.dir, certs.serving_sans("127.0.0.1", "node-a"))
    after = contents(tls)
    assert {n for n in before if before[n] != after[n]} == {"manifest.json"}


def test_a_missing_san_renews_only_the_serving_certificate(tls: certs.ClusterTLS) -> None:
    before = contents(tls)
    certs.ensure_cluster_tls(tls.dir, certs.serving_sans("192.0.2.7", "node-a"))
    after = contents(tls)
    assert "192.0.2.7" in sans(load(tls.serving[0]))
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"serving-kube-apiserver.crt", "serving-kube-apiserver.key", "manifest.json"}


def test_a_lost_ca_key_makes_a_new_ca_and_re_signs_its_leaves(tls: certs.ClusterTLS) -> None:
    tls.client_ca[1].unlink()
    old_admin = tls.admin[0].read_bytes()
    certs.ensure_cluster_tls(tls.dir, certs.serving_sans("127.0.0.1", "node-a"))
    assert tls.admin[0].read_bytes() != old_admin
    load(tls.admin[0]).verify_directly_issued_by(load(tls.client_ca[0]))


def test_an_unreadable_certificate_is_replaced(tls: certs.ClusterTLS) -> None:
    tls.serving[0].write_text("garbage")
    certs.ensure_cluster_tls(tls.dir, certs.serving_sans("127.0.0.1", "node-a"))
    load(tls.serving[0]).verify_directly_issued_by(load(tls.server_ca[0]))


def test_leaves_near_expiry_are_renewed(
    tls: certs.ClusterTLS, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = contents(tls)
    monkeypatch.setattr(certs, "RENEW_BEFORE", certs.LEAF_VALIDITY * 2)
    certs.ensure_cluster_tls(tls.dir, certs.serving_sans("127.0.0.1", "node-a"))
    after = contents(tls)
    assert after["server-ca.crt"] == before["server-ca.crt"]
    assert after["serving-kube-apiserver.crt"] != before["serving-kube-apiserver.crt"]
    assert after["client-admin.crt"] != before["client-admin.crt"]


def test_node_certificates_carry_the_node_identity(tls: certs.ClusterTLS) -> None:
    cert_pem, key_pem = certs.sign_node_cert(tls, "node-b")
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.subject.rfc4514_string() == "CN=system:node:node-b,O=system:nodes"
    cert.verify_directly_issued_by(load(tls.client_ca[0]))
    assert b"PRIVATE KEY" in key_pem


def test_serving_sans_skip_wildcards_and_duplicates() -> None:
    names = certs.serving_sans("0.0.0.0", "localhost")
    assert "0.0.0.0" not in names
    assert names.count("localhost") == 1
    assert "::" not in certs.serving_sans("::", "h")
    assert "h" in certs.serving_sans("::", "h")
    assert "api.example" in certs.serving_sans("api.example", "h")


async def test_the_files_make_a_mutual_tls_handshake(tls: certs.ClusterTLS) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*tls.serving)
    server_ctx.load_verify_locations(tls.client_ca[0])
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    peers: list[dict] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peercert"))
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context(cafile=str(tls.server_ca[0]))
    client_ctx.load_cert_chain(*tls.admin)
    async with server:
        for name in ("127.0.0.1", "kubernetes.default.svc"):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname=name
            )
            assert await reader.read() == b"ok"
            writer.close()
    subject = dict(rdn[0] for rdn in peers[0]["subject"])
    assert subject == {"organizationName": "system:masters", "commonName": "system:admin"}

"""Making and checking the cluster's certificates with `cryptography` (see `certs`).

Kept apart from `certs` so that a start whose certificates are known to be
fine never imports `cryptography` (~35 ms here).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nanokube.apiserver import pki
from nanokube.cli import certs
from nanokube.cli.certs import ClusterTLS, PathPair
from nanokube.cli.files import write_private

log = logging.getLogger(__name__)


def ensure(tls: ClusterTLS, sans: list[str]) -> float:
    """Create or renew what is needed; the earliest leaf expiry (epoch seconds)."""
    now = _now()
    server_ca = _ensure_ca(tls.server_ca, "nanokube-server-ca", now)
    client_ca = _ensure_ca(tls.client_ca, "nanokube-client-ca", now)
    serving = _ensure_leaf(tls.serving, server_ca, now, _serving_request(sans))
    admin = _ensure_leaf(
        tls.admin, client_ca, now, _client_request("system:admin", ["system:masters"])
    )
    kubelet_client = _ensure_leaf(
        tls.kubelet_client,
        client_ca,
        now,
        _client_request("kube-apiserver-kubelet-client", ["system:masters"]),
    )
    return min(c.not_valid_after_utc for c in (serving, admin, kubelet_client)).timestamp()


def sign_client_cert(
    tls: ClusterTLS, common_name: str, organizations: Sequence[str]
) -> tuple[bytes, bytes]:
    ca = _load_pair(tls.client_ca)
    if ca is None:
        raise FileNotFoundError(f"client CA missing under {tls.dir}")
    key = _new_key()
    cert = _sign(_client_request(common_name, list(organizations)), key, ca, _now())
    return _cert_pem(cert), _key_pem(key)


# --- what a certificate should be -------------------------------------------------


@dataclass(frozen=True)
class _Request:
    """The parts of a leaf certificate that decide whether an existing one still fits."""

    subject: x509.Name
    usage: x509.ObjectIdentifier
    sans: tuple[str, ...] = ()


def _serving_request(sans: list[str]) -> _Request:
    return _Request(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        sans=tuple(sans),
    )


def _client_request(common_name: str, organizations: list[str]) -> _Request:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return _Request(subject=x509.Name(attrs), usage=ExtendedKeyUsageOID.CLIENT_AUTH)


_CA = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _ensure_ca(paths: PathPair, name: str, now: datetime.datetime) -> _CA:
    loaded = _load_pair(paths)
    if loaded is not None:
        return loaded
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}@{int(now.timestamp())}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - pki.BACKDATE)
        .not_valid_after(now + certs.CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(pki.key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    log.info("created CA file=%s subject=%s", paths[0], subject.rfc4514_string())
    _write_pair(paths, cert, key)
    return cert, key


def _ensure_leaf(
    paths: PathPair, ca: _CA, now: datetime.datetime, request: _Request
) -> x509.Certificate:
    loaded = _load_pair(paths)
    if loaded is not None:
        reason = _unfit_reason(loaded[0], ca[0], now, request)
        if reason is None:
            return loaded[0]
        log.info("renewing certificate file=%s reason=%s", paths[0], reason)
    key = _new_key()
    cert = _sign(request, key, ca, now)
    _write_pair(paths, cert, key)
    return cert


def _unfit_reason(
    cert: x509.Certificate, ca_cert: x509.Certificate, now: datetime.datetime, request: _Request
) -> str | None:
    """Why an existing certificate must be replaced, or None if it still fits."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by the current CA"
    if cert.subject != request.subject:
        return "subject changed"
    if cert.not_valid_after_utc - now < certs.RENEW_BEFORE:
        return "expires soon"
    if request.sans:
        have = _sans_of(cert)
        missing = [s for s in request.sans if _normalise_san(s) not in have]
        if missing:
            return f"missing SANs {','.join(missing)}"
    return None


def _sans_of(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    ips = {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}
    return ips | set(ext.get_values_for_type(x509.DNSName))


def _normalise_san(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def _sign(
    request: _Request, key: ec.EllipticCurvePrivateKey, ca: _CA, now: datetime.datetime
) -> x509.Certificate:
    return pki.sign_leaf(
        request.subject,
        key.public_key(),
        ca,
        request.usage,
        request.sans,
        certs.LEAF_VALIDITY,
        now,
        authority_key_id=True,
    )


# --- keys and files ------------------------------------------------------------


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _load_pair(paths: PathPair) -> _CA | None:
    """The certificate and its EC key, or None if either is missing, unreadable or mismatched."""
    try:
        cert = x509.load_pem_x509_certificate(paths[0].read_bytes())
        key = serialization.load_pem_private_key(paths[1].read_bytes(), password=None)
    except FileNotFoundError:
        return None
    except ValueError as e:
        log.warning("unreadable certificate file=%s error=%s", paths[0], e)
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        log.warning("key does not match certificate file=%s", paths[1])
        return None
    return cert, key


def _write_pair(paths: PathPair, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    # The key first: a crash between the two leaves a mismatch that the next start repairs.
    write_private(paths[1], _key_pem(key))
    write_private(paths[0], _cert_pem(cert), mode=0o644)

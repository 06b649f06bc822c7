"""Signing a leaf certificate with a cluster CA: the one X.509 recipe for nanokube's leaves.

Both the server's node-certificate endpoint (`tokens_nodecert`, which signs a
joining agent's CSR) and the CLI's certificate files (`nanokube.cli.certgen`,
which signs keys it makes itself) issue leaves the same way: the subject the
caller decides, one extended key usage, digital signature only, not a CA,
valid from five minutes ago (clock skew) until `validity` from now but never
past the CA's own expiry, and the SANs as IP addresses or DNS names. It lives
in `apiserver` because `cli` may import `apiserver` but not the other way round.

This module imports `cryptography` (~35 ms) at load: callers that must start
fast import it where they sign.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)

# How far before "now" a new certificate starts being valid: tolerates clock skew.
BACKDATE = datetime.timedelta(minutes=5)


def sign_leaf(
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    ca: tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes],
    usage: x509.ObjectIdentifier,
    sans: Sequence[str],
    validity: datetime.timedelta,
    now: datetime.datetime,
    *,
    authority_key_id: bool = False,
) -> x509.Certificate:
    """A leaf for `public_key` signed by `ca`; `authority_key_id` adds the issuer's key id."""
    ca_cert, ca_key = ca
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if authority_key_id:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([general_name(s) for s in sans]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256())


def key_usage(*, ca: bool) -> x509.KeyUsage:
    """Digital signature only; a CA also signs certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def general_name(name: str) -> x509.GeneralName:
    """An IP address SAN if `name` parses as one, else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)

"""The shared leaf recipe: validity capped by the CA, SANs typed, key id only on request."""

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nanokube.apiserver import pki

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def _ca(lifetime: datetime.timedelta) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    sans: list[str] | None = None,
    authority_key_id: bool = False,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")])
    key = ec.generate_private_key(ec.SECP256R1())
    return pki.sign_leaf(
        subject,
        key.public_key(),
        ca,
        ExtendedKeyUsageOID.SERVER_AUTH,
        sans or [],
        datetime.timedelta(days=365),
        NOW,
        authority_key_id=authority_key_id,
    )


def test_leaf_is_signed_by_the_ca_and_backdated() -> None:
    ca = _ca(datetime.timedelta(days=3650))
    cert = _leaf(ca)
    cert.verify_directly_issued_by(ca[0])
    assert cert.not_valid_before_utc == NOW - pki.BACKDATE
    assert cert.not_valid_after_utc == NOW + datetime.timedelta(days=365)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign


def test_only_a_ca_key_usage_signs_certificates_and_crls() -> None:
    ca = pki.key_usage(ca=True)
    assert ca.digital_signature and ca.key_cert_sign and ca.crl_sign


def test_validity_never_outlives_the_ca() -> None:
    ca = _ca(datetime.timedelta(days=30))
    assert _leaf(ca).not_valid_after_utc == ca[0].not_valid_after_utc


def test_sans_are_ips_or_dns_names() -> None:
    cert = _leaf(_ca(datetime.timedelta(days=3650)), sans=["10.0.0.5", "n1"])
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    assert sans.get_values_for_type(x509.DNSName) == ["n1"]


def test_authority_key_id_only_when_asked() -> None:
    ca = _ca(datetime.timedelta(days=3650))
    with_id = _leaf(ca, authority_key_id=True)
    want = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca[1].public_key())
    assert with_id.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value == want
    assert x509.AuthorityKeyIdentifier not in {type(e.value) for e in _leaf(ca).extensions}

"""A small P-384 test PKI (root → issuing CA → end certificates) and an OCSP responder for it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ccai.errors import CollateralUnavailable
from ccai.virtual import (
    DevCollateralSettings,
    OcspIssuer,
    OcspResponder,
    OcspRevocation,
    create_dev_collateral_app,
    run_in_background,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
RIM_ID = "NV_GPU_DRIVER_GH100_550.144.03"
RIM_XML = b"<SoftwareIdentity>test</SoftwareIdentity>"


def need_service_extra() -> None:
    """Skip the test without the [service] extra (the collateral server's HTTP app needs FastAPI)."""
    pytest.importorskip(
        "fastapi", reason="the dev collateral server needs the [service] extra: pip install 'ccai[service]'"
    )


def make_cert(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    serial: int,
    ca: bool,
    eku: list[x509.ObjectIdentifier] | None = None,
    not_before: datetime = datetime(2024, 1, 1, tzinfo=UTC),
    not_after: datetime = datetime(2030, 1, 1, tzinfo=UTC),
) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ccai TEST"),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(issuer_key, hashes.SHA384())


@dataclass
class Pki:
    root: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    good: x509.Certificate
    revoked: x509.Certificate
    held: x509.Certificate
    delegate: x509.Certificate
    delegate_key: ec.EllipticCurvePrivateKey
    other_key: ec.EllipticCurvePrivateKey

    def revocation(self, issuer: x509.Certificate, serial: int) -> OcspRevocation | None:
        if serial == self.revoked.serial_number:
            return OcspRevocation(
                revoked_at=datetime(2025, 1, 1, tzinfo=UTC), reason=x509.ReasonFlags.key_compromise
            )
        if serial == self.held.serial_number:
            return OcspRevocation(
                revoked_at=datetime(2025, 2, 1, tzinfo=UTC), reason=x509.ReasonFlags.certificate_hold
            )
        return None

    def responder(self, *, delegated: bool = False, clock_at: datetime = NOW) -> OcspResponder:
        issuer = OcspIssuer(
            certificate=self.ca,
            private_key=self.ca_key,
            delegate_certificate=self.delegate if delegated else None,
            delegate_key=self.delegate_key if delegated else None,
        )
        return OcspResponder([issuer], revocation=self.revocation, clock=lambda: clock_at)


@pytest.fixture(scope="session")
def pki() -> Pki:
    root_key, ca_key, end_key, delegate_key, other_key = (
        ec.generate_private_key(ec.SECP384R1()) for _ in range(5)
    )
    root = make_cert("Test Root", root_key, issuer=None, issuer_key=root_key, serial=1, ca=True)
    ca = make_cert("Test CA", ca_key, issuer=root, issuer_key=root_key, serial=2, ca=True)
    good = make_cert("Good", end_key, issuer=ca, issuer_key=ca_key, serial=0x1001, ca=False)
    revoked = make_cert("Revoked", end_key, issuer=ca, issuer_key=ca_key, serial=0x1002, ca=False)
    held = make_cert("Held", end_key, issuer=ca, issuer_key=ca_key, serial=0x1003, ca=False)
    delegate = make_cert(
        "Test OCSP",
        delegate_key,
        issuer=ca,
        issuer_key=ca_key,
        serial=0x2001,
        ca=False,
        eku=[ExtendedKeyUsageOID.OCSP_SIGNING],
    )
    return Pki(
        root=root,
        root_key=root_key,
        ca=ca,
        ca_key=ca_key,
        good=good,
        revoked=revoked,
        held=held,
        delegate=delegate,
        delegate_key=delegate_key,
        other_key=other_key,
    )


@pytest.fixture(scope="module")
def server(pki: Pki) -> Iterator[str]:
    """The development collateral server on loopback, serving one RIM and OCSP for the test CA."""
    need_service_extra()

    def rim(rim_id: str) -> bytes:
        if rim_id != RIM_ID:
            raise CollateralUnavailable(f"no RIM {rim_id}")
        return RIM_XML

    settings = DevCollateralSettings(
        rim=rim,
        rim_ids=lambda: [RIM_ID],
        responder=OcspResponder(
            [OcspIssuer(certificate=pki.ca, private_key=pki.ca_key)], revocation=pki.revocation
        ),
    )
    with run_in_background(create_dev_collateral_app(settings)) as url:
        yield url


@pytest.fixture(scope="session")
def cert_factory() -> object:
    """The certificate builder, for tests that need an unusual certificate."""
    return make_cert

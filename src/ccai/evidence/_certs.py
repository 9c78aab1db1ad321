"""PEM certificate chains as NVML and NVIDIA's evidence JSON carry them: concatenated PEM, leaf first."""

from __future__ import annotations

import re

from cryptography import x509

from ccai.errors import MalformedEvidence

__all__ = ["parse_cert_chain"]

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END ([A-Z0-9 ]+)-----",
    re.DOTALL,
)


def parse_cert_chain(pem: bytes) -> tuple[x509.Certificate, ...]:
    """Parse a concatenated PEM certificate chain, keeping its order (leaf first, root last).

    Only ``CERTIFICATE`` blocks are accepted; text between blocks must be whitespace (NVML pads the
    buffer with NULs, which are tolerated at the end). Nothing about the chain is checked here:
    order, issuers and validity are the verifier's job.

    Args:
        pem: The chain as bytes.

    Returns:
        The certificates in the order given.

    Raises:
        MalformedEvidence: no certificate, a non-certificate PEM block, stray text, or a block
            that is not a DER X.509 certificate.
    """
    data = bytes(pem).rstrip(b"\0")
    certs: list[x509.Certificate] = []
    pos = 0
    for n, m in enumerate(_PEM_BLOCK.finditer(data)):
        if data[pos : m.start()].strip():
            raise MalformedEvidence(
                f"certificate chain: unexpected text before certificate {n}", step="parse", index=n
            )
        if m.group(1) != b"CERTIFICATE" or m.group(3) != b"CERTIFICATE":
            raise MalformedEvidence(
                f"certificate chain: block {n} is {m.group(1).decode('ascii', 'replace')}, not CERTIFICATE",
                step="parse",
                index=n,
            )
        try:
            certs.append(x509.load_pem_x509_certificate(m.group(0)))
        except ValueError as exc:
            raise MalformedEvidence(
                f"certificate chain: certificate {n} cannot be decoded: {exc}", step="parse", index=n
            ) from None
        pos = m.end()
    if data[pos:].strip():
        raise MalformedEvidence("certificate chain: unexpected text after the last certificate", step="parse")
    if not certs:
        raise MalformedEvidence("certificate chain: no PEM certificate found", step="parse")
    return tuple(certs)

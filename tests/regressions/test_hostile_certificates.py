"""Regression: certificates and CRLs that ``cryptography`` loads but cannot fully decode.

``cryptography`` decodes lazily, so a certificate with version v4, a duplicated extension or an
unknown signature algorithm used to load fine and then raise ``InvalidVersion``,
``DuplicateExtension`` or ``UnsupportedAlgorithm`` in the middle of a chain check: the CLI answered
exit 70 "internal error" instead of exit 1. Each input here is a real certificate or CRL from
``tests/vectors`` with one such defect; each must now be refused as ``MalformedEvidence`` wherever it
enters (GPU device chain, TDX PCK chain, TDX collateral chains and CRLs, SNP VCEK, RIM signer).
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from ccai.collateral import GpuCollateral, SnpCollateral, TdxCollateral, tdx_collateral_from_json
from ccai.errors import EvidenceError, MalformedEvidence
from ccai.evidence import (
    GpuEvidence,
    load_certificate,
    load_crl,
    load_report,
    parse_cert_chain,
    parse_rim,
    parse_tdx_quote,
)
from ccai.verify import default_policy, snp_rules, verify_gpu_evidence, verify_snp_report, verify_tdx_quote

NVT0 = "nvtrust/NVIDIA_nvtrust@0ab869a/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples"
UT = "nvtrust/NVIDIA_attestation-sdk@73c032e/nv-attestation-sdk-cpp/unit-tests/testdata"
NONCE_4CFF = bytes.fromhex("4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e")
PIN_GPU = datetime(2024, 6, 1, tzinfo=UTC)
PIN_TDX = datetime(2025, 6, 20, tzinfo=UTC)
PIN_SNP = datetime(2025, 1, 1, tzinfo=UTC)
_QUOTE = Path(__file__).resolve().parents[1] / "vectors" / "cpu" / "tdx" / "dcap-qvl" / "tdx_quote"

# -- a minimal DER rewriter (definite lengths only, enough for X.509) --------------------------


def _read(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, end) of the element at ``pos``."""
    tag, first = data[pos], data[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    count = first & 0x7F
    length = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
    return tag, pos + 2 + count, pos + 2 + count + length


def _children(content: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(content):
        _, _, end = _read(content, pos)
        out.append(content[pos:end])
        pos = end
    return out


def _encode(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _content(element: bytes) -> bytes:
    _, start, end = _read(element, 0)
    return element[start:end]


def with_version_v4(der: bytes) -> bytes:
    """TBSCertificate ``version [0] EXPLICIT INTEGER 2`` (v3) becomes 3 (no such version)."""
    assert b"\xa0\x03\x02\x01\x02" in der
    return der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x03", 1)


def with_duplicated_extension(der: bytes) -> bytes:
    """The first extension of the TBSCertificate appears twice."""
    cert = _children(_content(der))
    tbs = _children(_content(cert[0]))
    index = next(i for i, e in enumerate(tbs) if e[0] == 0xA3)
    extensions = _children(_content(_content(tbs[index])))
    tbs[index] = _encode(0xA3, _encode(0x30, b"".join([extensions[0], *extensions])))
    cert[0] = _encode(0x30, b"".join(tbs))
    return _encode(0x30, b"".join(cert))


def with_unknown_signature_oid(der: bytes) -> bytes:
    """The signature algorithm becomes an unassigned OID: ecdsa-with-SHA256/384 (1.2.840.10045.4.3.2/3)
    becomes 1.2.840.10045.4.3.9, RSASSA-PSS (1.2.840.113549.1.1.10) becomes 1.2.840.113549.1.1.127."""
    ecdsa = re.compile(rb"\x06\x08\x2a\x86\x48\xce\x3d\x04\x03[\x02\x03]")
    pss = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0a"
    assert ecdsa.search(der) or pss in der
    return ecdsa.sub(b"\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x09", der).replace(pss, pss[:-1] + b"\x7f")


MUTATIONS: dict[str, Callable[[bytes], bytes]] = {
    "version-v4": with_version_v4,
    "duplicate-extension": with_duplicated_extension,
    "unknown-signature-oid": with_unknown_signature_oid,
}


def _pem(der: bytes) -> bytes:
    body = base64.b64encode(der).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return ("-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n").encode()


def _pem_blocks(pem: bytes) -> list[bytes]:
    return re.findall(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", pem, re.DOTALL)


def _der_of(block: bytes) -> bytes:
    return base64.b64decode(b"".join(block.split(b"\n")[1:-1]).replace(b"-----END CERTIFICATE-----", b""))


def test_the_mutations_load_but_do_not_decode_lazily(vectors: Path) -> None:
    """The premise: cryptography accepts each mutated certificate at load time, or fails lazily."""
    leaf = _der_of(_pem_blocks((vectors / NVT0 / "gpuAkCertChain.txt").read_bytes())[0])
    x509.load_der_x509_certificate(leaf)  # the original decodes
    for name, mutate in MUTATIONS.items():
        with pytest.raises(MalformedEvidence):
            load_certificate(mutate(leaf), what=name)


# -- GPU device chain ------------------------------------------------------------------------------


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.parametrize("position", [0, 1])
def test_gpu_device_chain_with_undecodable_certificate(vectors: Path, mutation: str, position: int) -> None:
    blocks = _pem_blocks((vectors / NVT0 / "gpuAkCertChain.txt").read_bytes())
    blocks[position] = _pem(MUTATIONS[mutation](_der_of(blocks[position])))
    chain = b"".join(blocks)
    with pytest.raises(MalformedEvidence, match=f"certificate {position} cannot be decoded"):
        parse_cert_chain(chain)
    item = GpuEvidence(
        arch="HOPPER",
        nonce=NONCE_4CFF,
        report=load_report((vectors / NVT0 / "attestationReport.txt").read_bytes()),
        certificate_chain=chain,
    )
    with pytest.raises(MalformedEvidence):
        verify_gpu_evidence(
            [item],
            nonce=NONCE_4CFF,
            collateral=GpuCollateral(ocsp_checked=False),
            now=PIN_GPU,
            policy=default_policy(allow_unchecked_revocation=True),
        )


# -- RIM signer -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_rim_with_undecodable_signing_certificate(vectors: Path, mutation: str) -> None:
    xml = (vectors / UT / "NV_GPU_DRIVER_GH100_550.144.03.xml").read_bytes()
    match = re.search(rb"(<ds:X509Certificate>)(.*?)(</ds:X509Certificate>)", xml, re.DOTALL)
    assert match is not None
    der = base64.b64decode(b"".join(match.group(2).split()))
    bad = base64.b64encode(MUTATIONS[mutation](der))
    hostile = xml[: match.start(2)] + bad + xml[match.end(2) :]
    with pytest.raises(MalformedEvidence, match="X509Certificate 0 cannot be decoded"):
        parse_rim(hostile)


# -- TDX: PCK chain in the quote, issuer chains and CRLs in the collateral -----------------------


def _tdx(vectors: Path) -> tuple[bytes, TdxCollateral]:
    quote = (vectors / "cpu/tdx/dcap-qvl/tdx_quote").read_bytes()
    text = (vectors / "cpu/tdx/dcap-qvl/tdx_quote_collateral.json").read_text()
    return quote, tdx_collateral_from_json(text)


def _same_length_in_quote(quote: bytes, mutate: Callable[[bytes], bytes]) -> bytes:
    """Mutate the PCK leaf inside the quote's PEM without changing any length field."""
    start = quote.index(b"-----BEGIN CERTIFICATE-----")
    end = quote.index(b"-----END CERTIFICATE-----", start)
    block = quote[start:end]
    header, _, body = block.partition(b"\n")
    der = base64.b64decode(b"".join(body.split()))
    new = base64.b64encode(mutate(der))
    assert len(new) == len(b"".join(body.split()))
    out, k = bytearray(body), 0
    for i, ch in enumerate(body):
        if ch not in b"\r\n":
            out[i] = new[k]
            k += 1
    return quote[:start] + header + b"\n" + bytes(out) + quote[end:]


@pytest.mark.parametrize("mutation", ["version-v4", "unknown-signature-oid"])
def test_tdx_quote_with_undecodable_pck_leaf(vectors: Path, mutation: str) -> None:
    quote, collateral = _tdx(vectors)
    hostile = _same_length_in_quote(quote, MUTATIONS[mutation])
    assert len(hostile) == len(quote)
    with pytest.raises(MalformedEvidence, match="PCK certificate chain"):
        parse_tdx_quote(hostile)
    with pytest.raises(MalformedEvidence):
        verify_tdx_quote(hostile, collateral, now=PIN_TDX)


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_tdx_collateral_issuer_chain_with_undecodable_certificate(vectors: Path, mutation: str) -> None:
    quote, collateral = _tdx(vectors)
    blocks = _pem_blocks(collateral.tcb_info_issuer_chain.encode())
    blocks[0] = _pem(MUTATIONS[mutation](_der_of(blocks[0])))
    bad = replace(collateral, tcb_info_issuer_chain=b"".join(blocks).decode())
    with pytest.raises(MalformedEvidence, match="TCB Info issuer chain") as info:
        verify_tdx_quote(quote, bad, now=PIN_TDX)
    assert info.value.step == "(7) TCB Info"


def _crl_with_duplicated_extension(der: bytes) -> bytes:
    crl = _children(_content(der))
    tbs = _children(_content(crl[0]))
    index = next(i for i, e in enumerate(tbs) if e[0] == 0xA0)
    extensions = _children(_content(_content(tbs[index])))
    tbs[index] = _encode(0xA0, _encode(0x30, b"".join([extensions[0], *extensions])))
    crl[0] = _encode(0x30, b"".join(tbs))
    return _encode(0x30, b"".join(crl))


CRL_MUTATIONS: dict[str, Callable[[bytes], bytes]] = {
    "duplicate-extension": _crl_with_duplicated_extension,
    "unknown-signature-oid": with_unknown_signature_oid,
}


@pytest.mark.parametrize("mutation", sorted(CRL_MUTATIONS))
@pytest.mark.parametrize("field", ["pck_crl", "root_ca_crl"])
def test_tdx_collateral_crl_that_does_not_decode(vectors: Path, field: str, mutation: str) -> None:
    quote, collateral = _tdx(vectors)
    hostile = CRL_MUTATIONS[mutation](getattr(collateral, field))
    x509.load_der_x509_crl(hostile)  # loads: the defect is found only when decoded
    with pytest.raises(MalformedEvidence):
        load_crl(hostile, what=field)
    with pytest.raises(MalformedEvidence) as info:
        verify_tdx_quote(quote, replace(collateral, **{field: hostile}), now=PIN_TDX)
    assert info.value.step == "(3) CRLs and revocation"


# -- SNP VCEK ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_snp_vcek_that_does_not_decode(vectors: Path, mutation: str) -> None:
    report = bytes.fromhex((vectors / "cpu/snp/virtee-sev/report_milan.hex").read_text().strip())
    vcek = (vectors / "cpu/snp/virtee-sev/vcek_milan.der").read_bytes()
    no_crl = snp_rules(allow_unchecked_revocation=True)  # the vector comes without an ARK CRL
    assert verify_snp_report(report, SnpCollateral(vcek=vcek), now=PIN_SNP, policy=no_crl).claims
    with pytest.raises(MalformedEvidence, match="AMD certificate cannot be decoded"):
        verify_snp_report(report, SnpCollateral(vcek=MUTATIONS[mutation](vcek)), now=PIN_SNP, policy=no_crl)


# -- the hypothesis finding that made test_mutated_real_quote_raises_only_evidence_error flaky ------


def test_tdx_quote_byte_3075_plus_9_is_malformed(vectors: Path) -> None:
    """The byte change hypothesis hit now and then: the PCK chain's certificate version becomes 38."""
    raw = bytearray((vectors / "cpu/tdx/dcap-qvl/tdx_quote").read_bytes())
    raw[3075] = (raw[3075] + 9) % 256
    with pytest.raises(MalformedEvidence, match="PCK certificate chain"):
        parse_tdx_quote(bytes(raw))


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1258, max_value=5005), st.integers(min_value=1, max_value=255))
def test_any_change_in_the_pck_chain_text_raises_only_evidence_errors(pos: int, delta: int) -> None:
    raw = bytearray(_QUOTE.read_bytes())
    raw[pos] = (raw[pos] + delta) % 256
    with contextlib.suppress(EvidenceError):
        parse_tdx_quote(bytes(raw))

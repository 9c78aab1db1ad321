"""Mutation negatives: a flipped byte in each signed region of a real TDX quote or its collateral
fails at the right step with the right error (dcap-qvl ``tdx_quote`` + collateral at 2025-06-20)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccai.collateral import TdxCollateral, tdx_collateral_from_json
from ccai.errors import (
    BindingError,
    ChainError,
    Error,
    EvidenceError,
    MalformedEvidence,
    SignatureError,
    VerificationError,
)
from ccai.verify import verify_tdx_quote

NOW = datetime.fromisoformat("2025-06-20T00:00:00+00:00")

# v4 layout (reference §2.1-2.5): header 0..48, body 48..632 (REPORTDATA 568..632), signature 636..700,
# attestation key 700..764, QE report 770..1154, QE report signature 1154..1218, QE auth data
# 1220..1252, PCK chain PEM from 1258.
QUOTE_CASES = [
    ("header user_data", 30, SignatureError, "(6) quote signature"),
    ("header qe_vendor_id", 12, Exception, "(1) parse quote"),
    ("body TEE_TCB_SVN", 49, SignatureError, "(6) quote signature"),
    ("body MRTD", 200, SignatureError, "(6) quote signature"),
    ("body RTMR3", 500, SignatureError, "(6) quote signature"),
    ("body REPORTDATA", 600, SignatureError, "(6) quote signature"),
    ("quote signature r", 640, SignatureError, "(6) quote signature"),
    ("quote signature s", 690, SignatureError, "(6) quote signature"),
    ("attestation key", 710, BindingError, "(5) QE report data binding"),
    ("QE report CPUSVN", 772, SignatureError, "(4) QE report signature"),
    ("QE report MRSIGNER", 770 + 130, SignatureError, "(4) QE report signature"),
    ("QE report REPORTDATA", 770 + 330, SignatureError, "(4) QE report signature"),
    ("QE report signature", 1160, SignatureError, "(4) QE report signature"),
    ("QE auth data", 1230, BindingError, "(5) QE report data binding"),
    ("PCK leaf certificate", 1361, ChainError, "(2) PCK certificate chain"),
    ("PCK leaf certificate (2)", 2099, ChainError, "(2) PCK certificate chain"),
]


@pytest.fixture(scope="module")
def quote(vectors: Path) -> bytes:
    return (vectors / "cpu/tdx/dcap-qvl/tdx_quote").read_bytes()


@pytest.fixture(scope="module")
def collateral(vectors: Path) -> TdxCollateral:
    return tdx_collateral_from_json((vectors / "cpu/tdx/dcap-qvl/tdx_quote_collateral.json").read_text())


def _flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    if 1258 <= offset < 3000:  # inside the PEM text: swap for another base64 character
        out[offset] = ord("A") if out[offset] != ord("A") else ord("B")
    else:
        out[offset] ^= 0x01
    return bytes(out)


def test_unmodified_quote_verifies(quote: bytes, collateral: TdxCollateral) -> None:
    assert verify_tdx_quote(quote, collateral, now=NOW).claims["tcb_status"] == "UpToDate"


@pytest.mark.parametrize(("region", "offset", "error", "step"), QUOTE_CASES, ids=[c[0] for c in QUOTE_CASES])
def test_flipped_quote_byte(
    quote: bytes, collateral: TdxCollateral, region: str, offset: int, error: type[Exception], step: str
) -> None:
    with pytest.raises(error) as info:
        verify_tdx_quote(_flip(quote, offset), collateral, now=NOW)
    assert isinstance(info.value, VerificationError)
    assert info.value.step == step, region


def test_flipped_pck_leaf_public_key_is_malformed(quote: bytes, collateral: TdxCollateral) -> None:
    # The leaf's EC point no longer decodes: refused when the quote is parsed, before any chain check.
    with pytest.raises(MalformedEvidence, match="certificate 0 cannot be decoded") as info:
        verify_tdx_quote(_flip(quote, 1751), collateral, now=NOW)
    assert info.value.step == "parse" and info.value.index == 0


def _swap_text(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def test_tcb_info_text_tampered(collateral: TdxCollateral) -> None:
    bad = replace(collateral, tcb_info=_swap_text(collateral.tcb_info, '"pcesvn":11', '"pcesvn":10'))
    with pytest.raises(SignatureError) as info:
        verify_tdx_quote(_q(), bad, now=NOW)
    assert info.value.step == "(7) TCB Info"


def test_tcb_info_signature_flipped(collateral: TdxCollateral) -> None:
    sig = bytearray(collateral.tcb_info_signature)
    sig[5] ^= 1
    with pytest.raises(SignatureError) as info:
        verify_tdx_quote(_q(), replace(collateral, tcb_info_signature=bytes(sig)), now=NOW)
    assert info.value.step == "(7) TCB Info"


def test_qe_identity_tampered(collateral: TdxCollateral) -> None:
    bad = replace(
        collateral, qe_identity=_swap_text(collateral.qe_identity, '"isvprodid":2', '"isvprodid":3')
    )
    with pytest.raises(SignatureError) as info:
        verify_tdx_quote(_q(), bad, now=NOW)
    assert info.value.step == "(8) QE Identity"


def test_tcb_info_issuer_chain_swapped(collateral: TdxCollateral) -> None:
    assert collateral.pck_crl_issuer_chain is not None
    bad = replace(collateral, tcb_info_issuer_chain=collateral.pck_crl_issuer_chain)
    with pytest.raises(SignatureError) as info:
        verify_tdx_quote(_q(), bad, now=NOW)
    assert info.value.step == "(7) TCB Info"


def test_tcb_info_issuer_chain_not_from_intel(collateral: TdxCollateral, vectors: Path) -> None:
    # A chain that does not end at the pinned root: the AMD Milan ASK/ARK.
    amd = (vectors / "cpu/roots/amd/ask_ark_milan.pem").read_text()
    with pytest.raises(ChainError) as info:
        verify_tdx_quote(_q(), replace(collateral, tcb_info_issuer_chain=amd), now=NOW)
    assert info.value.step == "(7) TCB Info"


@pytest.mark.parametrize("field", ["pck_crl", "root_ca_crl"])
def test_crl_signature_flipped(collateral: TdxCollateral, field: str) -> None:
    der = bytearray(getattr(collateral, field))
    der[-5] ^= 1  # inside the ECDSA signature at the end of the CRL
    with pytest.raises((SignatureError, MalformedEvidence)) as info:
        verify_tdx_quote(_q(), replace(collateral, **{field: bytes(der)}), now=NOW)
    assert info.value.step == "(3) CRLs and revocation"


def test_pck_crl_from_wrong_issuer(collateral: TdxCollateral) -> None:
    # The Root CA CRL in place of the PCK CRL: issued by the root, not the PCK Platform CA.
    with pytest.raises(ChainError, match="not issued by") as info:
        verify_tdx_quote(_q(), replace(collateral, pck_crl=collateral.root_ca_crl), now=NOW)
    assert info.value.step == "(3) CRLs and revocation"


_QUOTE_CACHE: dict[str, bytes] = {}


def _q() -> bytes:
    return _QUOTE_CACHE["quote"]


@pytest.fixture(autouse=True, scope="module")
def _cache_quote(quote: bytes) -> None:
    _QUOTE_CACHE["quote"] = quote


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=1257), st.integers(min_value=1, max_value=255))
def test_any_flipped_signed_byte_fails(pos: int, delta: int) -> None:
    """Any change in header, body, signature data or QE certification data is rejected, and only
    with a ccai error (never an unexpected exception)."""
    raw = bytearray(_q())
    raw[pos] = (raw[pos] + delta) % 256
    coll = _COLL.get("c")
    with pytest.raises(Error) as info:
        verify_tdx_quote(bytes(raw), coll, now=NOW)
    assert isinstance(info.value, EvidenceError | VerificationError)


_COLL: dict[str, TdxCollateral] = {}


@pytest.fixture(autouse=True, scope="module")
def _cache_collateral(collateral: TdxCollateral) -> None:
    _COLL["c"] = collateral

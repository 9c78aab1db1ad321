"""Every SEV-SNP vector in tests/vectors/cpu/manifest.json verifies with its chain at a time in its
window; the debug-policy report is rejected; bindings; mutation negatives; policies."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ccai.collateral import (
    SnpCollateral,
    load_certificates,
    snp_collateral_from_certificates,
    snp_collateral_from_json,
)
from ccai.errors import (
    BindingError,
    CertificateExpired,
    ChainError,
    CollateralUnavailable,
    EvidenceError,
    MeasurementMismatch,
    PolicyViolation,
    SignatureError,
    TcbError,
    UsageError,
    VerificationError,
)
from ccai.evidence import SnpProduct, parse_snp_report
from ccai.verify import SNP_STEPS, amd_roots, load_policy, snp_rules, verify_snp_report
from ccai.verify._cpu_chain import verify_link

# No vector carries an ARK CRL: revocation is unchecked, which the default policy refuses.
NO_CRL = snp_rules(allow_unchecked_revocation=True)

# A time inside each vector's window (SNP entries give windows as text: "any in A..B").
TIMES = {
    "snp-gsg-milan-v2-debugpolicy": "2025-01-01",
    "snp-virtee-milan-v2": "2025-01-01",
    "snp-trustee-milan-v2-vcek": "2025-01-01",
    "snp-trustee-milan-v3-vlek-aws": "2025-06-01",
    "snp-azure-milan-v2": "2025-01-01",
    "snp-azure-genoa-v3": "2025-06-01",
    "snp-dstack-milan-v3": "2026-07-01",
    "snp-gcp-milan-v5": "2026-01-01",
    "snp-gcp-milan-v5-x25519-binding": "2026-01-01",
}


def _at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def _manifest(vectors: Path) -> dict[str, Any]:
    return {v["id"]: v for v in json.loads((vectors / "cpu/manifest.json").read_text())["vectors"]}


def _load(vectors: Path, vid: str) -> tuple[list[bytes], SnpCollateral, datetime]:
    v = _manifest(vectors)[vid]
    reports: list[bytes] = []
    certs = []
    for f in v["files"]:
        path = vectors / "cpu" / f["path"]
        if path.suffix in (".bin", ".hex"):
            raw = path.read_bytes()
            if path.suffix == ".hex":
                raw = bytes.fromhex(raw.decode().strip())
            if path.name == "hcl-report.bin":
                raw = raw[32 : 32 + 1184]
            reports.append(raw)
        elif path.suffix in (".pem", ".der", ".testcer"):
            certs += load_certificates(path.read_bytes())
    return reports, snp_collateral_from_certificates(certs), _at(TIMES[vid])


def test_manifest_lists_exactly_these_snp_vectors(vectors: Path) -> None:
    assert sorted(k for k in _manifest(vectors) if k.startswith("snp-")) == sorted(
        [*TIMES, "snp-turin-chain-only"]
    )


@pytest.mark.parametrize("vid", [v for v in TIMES if v != "snp-gsg-milan-v2-debugpolicy"])
def test_vector_verifies(vectors: Path, vid: str) -> None:
    reports, collateral, now = _load(vectors, vid)
    expect = _manifest(vectors)[vid]["expect"]
    for raw in reports:
        result = verify_snp_report(raw, collateral, now=now, policy=NO_CRL)
        assert result.claims["version"] == expect.get("version", result.claims["version"])
        assert [s for s, _ in result.steps] == list(SNP_STEPS)
        tcb = expect.get("reported_tcb")
        if tcb:
            got = result.claims["reported_tcb"]
            assert (got["blSPL"], got["teeSPL"], got["snpSPL"], got["ucodeSPL"]) == (
                tcb["bl"],
                tcb["tee"],
                tcb["snp"],
                tcb["ucode"],
            )
        if "signer" in expect:
            assert result.signing_key == expect["signer"]
        if "product" in expect:
            assert result.product is SnpProduct(expect["product"])


def test_debug_policy_report_rejected_by_default(vectors: Path) -> None:
    (raw,), collateral, now = _load(vectors, "snp-gsg-milan-v2-debugpolicy")
    trace: list[tuple[str, str]] = []
    with pytest.raises(PolicyViolation, match="DEBUG") as info:
        verify_snp_report(raw, collateral, now=now, trace=trace)
    assert info.value.step == "(6) policy"
    assert [s for s, _ in trace] == list(SNP_STEPS[:5])  # chain, signature, TCB all fine
    result = verify_snp_report(
        raw, collateral, now=now, policy=snp_rules(allow_unchecked_revocation=True, allow_debug=True)
    )
    assert result.claims["policy_debug"] is True
    assert result.claims["report_data"].startswith("0102030405")


def test_vlek_aws(vectors: Path) -> None:
    (raw,), collateral, now = _load(vectors, "snp-trustee-milan-v3-vlek-aws")
    result = verify_snp_report(raw, collateral, now=now, policy=NO_CRL)
    assert result.claims["csp_id"] == "CN=cc-us-east-2.amazonaws.com"
    assert result.claims["vmpl"] == 1
    assert result.claims["chip_id"] == "00" * 64
    # VLEKs live one year: after 2025-12-10 the same report fails at the chain step.
    with pytest.raises(CertificateExpired) as info:
        verify_snp_report(raw, collateral, now=_at("2026-01-01"))
    assert info.value.step == "(3) certificate chain"
    with pytest.raises(PolicyViolation, match="VLEK"):
        verify_snp_report(
            raw,
            collateral,
            now=now,
            policy=snp_rules(allow_unchecked_revocation=True, allowed_signing_keys=frozenset({"VCEK"})),
        )


def test_dstack_fails_before_vcek_not_before(vectors: Path) -> None:
    (raw,), collateral, _ = _load(vectors, "snp-dstack-milan-v3")
    with pytest.raises(CertificateExpired):
        verify_snp_report(raw, collateral, now=_at("2026-06-01"))
    result = verify_snp_report(raw, collateral, now=_at("2026-07-01"), policy=NO_CRL)
    assert bytes.fromhex(result.claims["report_data"]) == b"attest-test-fixture-2026".ljust(64, b"\0")
    assert result.claims["host_data"] == "783f0057820acb99249af56cc3b07b4e8d80f65183167cba9cf437bb680f742f"
    assert result.claims["measurement"].startswith("7f51e17f72a04d54")


def test_gcp_x25519_binding(vectors: Path) -> None:
    (raw,), collateral, now = _load(vectors, "snp-gcp-milan-v5-x25519-binding")
    values = dict(
        line.split("=", 1)
        for line in (vectors / "cpu/snp/teekit/sev-gcp-x25519-bound.txt").read_text().split()
        if "=" in line
    )
    expected = hashlib.sha512(bytes.fromhex(values["NONCE"]) + bytes.fromhex(values["X25519_KEY"])).digest()
    result = verify_snp_report(
        raw, collateral, now=now, policy=snp_rules(allow_unchecked_revocation=True, report_data=expected)
    )
    assert result.claims["report_data"] == expected.hex()
    other_key = hashlib.sha512(bytes.fromhex(values["NONCE"]) + bytes(32)).digest()
    with pytest.raises(BindingError, match="REPORT_DATA"):
        verify_snp_report(
            raw, collateral, now=now, policy=snp_rules(allow_unchecked_revocation=True, report_data=other_key)
        )


@pytest.mark.parametrize("vid", ["snp-azure-milan-v2", "snp-azure-genoa-v3"])
def test_azure_hcl_binding(vectors: Path, vid: str) -> None:
    path = vectors / "cpu" / _manifest(vectors)[vid]["files"][0]["path"]
    hcl = path.read_bytes()
    (raw,), collateral, now = _load(vectors, vid)
    length = int.from_bytes(hcl[1232:1236], "little")
    runtime_claims = hcl[1236 : 1236 + length]
    result = verify_snp_report(raw, collateral, now=now, policy=NO_CRL)
    assert bytes.fromhex(result.claims["report_data"])[:32] == hashlib.sha256(runtime_claims).digest()


def test_turin_chain_only(vectors: Path) -> None:
    (vcek,) = load_certificates((vectors / "cpu/snp/virtee-sev/vcek_turin.der").read_bytes())
    roots = amd_roots(SnpProduct.TURIN)
    verify_link(roots.ask, roots.ark, step="chain", index=1)
    verify_link(vcek, roots.ask, step="chain", index=0)
    with pytest.raises(ChainError):
        verify_link(vcek, amd_roots(SnpProduct.MILAN).ask, step="chain", index=0)


def test_missing_vcek_is_collateral_unavailable(vectors: Path) -> None:
    (raw,), _, now = _load(vectors, "snp-virtee-milan-v2")
    with pytest.raises(CollateralUnavailable):
        verify_snp_report(raw, SnpCollateral(), now=now)


def test_wrong_vcek_is_rejected(vectors: Path) -> None:
    (raw,), _, now = _load(vectors, "snp-virtee-milan-v2")
    _, other, _ = _load(vectors, "snp-gcp-milan-v5")
    with pytest.raises(SignatureError) as info:
        verify_snp_report(raw, other, now=_at("2026-01-01"))
    assert info.value.step == "(4) report signature"
    del now


def test_genoa_vcek_with_milan_chain_rejected(vectors: Path) -> None:
    (raw,), collateral, now = _load(vectors, "snp-azure-genoa-v3")
    milan = snp_collateral_from_certificates(
        load_certificates((vectors / "cpu/roots/amd/ask_ark_milan.pem").read_bytes())
    )
    with pytest.raises(ChainError):
        verify_snp_report(raw, replace(collateral, ask=milan.ask, ark=milan.ark), now=now)


# Mutation negatives on the GCP v5 report (VCEK-signed, VMPL 0).
MUTATIONS = [
    ("POLICY ABI minor", 0x008, SignatureError, "(4) report signature"),
    ("MEASUREMENT", 0x095, SignatureError, "(4) report signature"),
    ("REPORT_DATA", 0x060, SignatureError, "(4) report signature"),
    ("HOST_DATA", 0x0C5, SignatureError, "(4) report signature"),
    ("REPORTED_TCB ucode", 0x187, SignatureError, "(4) report signature"),
    ("CHIP_ID", 0x1B0, SignatureError, "(4) report signature"),
    ("SIGNATURE.R", 0x2A5, SignatureError, "(4) report signature"),
    ("SIGNATURE.S", 0x2F0, SignatureError, "(4) report signature"),
]


@pytest.mark.parametrize(("region", "offset", "error", "step"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_flipped_report_byte(
    vectors: Path, region: str, offset: int, error: type[Exception], step: str
) -> None:
    (raw, _), collateral, now = _load(vectors, "snp-gcp-milan-v5")
    flipped = bytearray(raw)
    flipped[offset] ^= 0x01
    with pytest.raises(error) as info:
        verify_snp_report(bytes(flipped), collateral, now=now)
    assert info.value.step == step, region


def test_flipped_vcek_byte_fails_chain(vectors: Path) -> None:
    (raw, _), collateral, now = _load(vectors, "snp-gcp-milan-v5")
    assert collateral.vcek is not None
    der = bytearray(collateral.vcek)
    der[-10] ^= 0x01  # inside the ASK's RSA-PSS signature over the VCEK
    with pytest.raises(ChainError) as info:
        verify_snp_report(raw, replace(collateral, vcek=bytes(der)), now=now)
    assert info.value.step == "(3) certificate chain"


def test_foreign_ark_rejected(vectors: Path) -> None:
    (raw, _), collateral, now = _load(vectors, "snp-gcp-milan-v5")
    genoa = snp_collateral_from_certificates(
        load_certificates((vectors / "cpu/roots/amd/ask_ark_genoa.pem").read_bytes())
    )
    with pytest.raises(ChainError, match="pinned ARK"):
        verify_snp_report(raw, replace(collateral, ark=genoa.ark), now=now)


def test_reported_tcb_must_match_vcek(vectors: Path) -> None:
    (raw,), collateral, now = _load(vectors, "snp-virtee-milan-v2")
    _, gcp, _ = _load(vectors, "snp-gcp-milan-v5")
    # Same chip family, different TCB: the signature check fails first (different key).
    with pytest.raises(VerificationError):
        verify_snp_report(raw, gcp, now=now)
    del collateral


def test_policies(vectors: Path) -> None:
    (raw, vmpl1), collateral, now = _load(vectors, "snp-gcp-milan-v5")
    report = parse_snp_report(raw)
    fields: dict[str, Any] = {
        "allow_unchecked_revocation": True,
        "measurement": {report.measurement},
        "host_data": {report.host_data},
        "allowed_vmpls": {0},
        "min_tcb": {"blSPL": 4, "snpSPL": 27, "ucodeSPL": 222},
    }
    ok = snp_rules(**fields)
    verify_snp_report(raw, collateral, now=now, policy=ok)
    with pytest.raises(PolicyViolation, match="VMPL"):
        verify_snp_report(vmpl1, collateral, now=now, policy=ok)
    with pytest.raises(MeasurementMismatch, match="MEASUREMENT"):
        verify_snp_report(
            raw, collateral, now=now, policy=snp_rules(**{**fields, "measurement": [bytes(48)]})
        )
    with pytest.raises(TcbError, match="minimum") as info:
        verify_snp_report(
            raw, collateral, now=now, policy=snp_rules(**{**fields, "min_tcb": {"ucodeSPL": 223}})
        )
    assert "223" in str(info.value.actual)
    with pytest.raises(PolicyViolation, match="SMT"):
        verify_snp_report(
            raw, collateral, now=now, policy=snp_rules(allow_unchecked_revocation=True, allow_smt=False)
        )


def test_committed_tcb_policy(vectors: Path) -> None:
    (raw,), collateral, now = _load(vectors, "snp-trustee-milan-v2-vcek")
    result = verify_snp_report(raw, collateral, now=now, policy=NO_CRL)
    assert result.claims["x-ccai-committed-equals-current"] is False
    with pytest.raises(TcbError, match="COMMITTED_TCB"):
        verify_snp_report(
            raw,
            collateral,
            now=now,
            policy=snp_rules(allow_unchecked_revocation=True, require_committed_tcb=True),
        )


def test_policy_from_mapping() -> None:
    policy = load_policy(
        {"snp": {"host_data": ["00" * 32], "min_tcb": {"snpSPL": 8}, "allowed_vmpls": [0]}}, part="cpu"
    )
    assert "host_data in an allow-list of 1" in policy.describe()
    with pytest.raises(UsageError, match="min_tcb"):
        load_policy({"snp": {"min_tcb": {"microcode": 1}}})
    with pytest.raises(UsageError, match="host_data"):
        load_policy({"snp": {"host_data": ["zz"]}})


def test_default_policy_requires_snp_revocation(vectors: Path) -> None:
    (raw,), collateral, now = _load(vectors, "snp-virtee-milan-v2")
    assert collateral.crl is None
    trace: list[tuple[str, str]] = []
    with pytest.raises(CollateralUnavailable, match="revocation was not checked: no ARK CRL") as info:
        verify_snp_report(raw, collateral, now=now, trace=trace)
    assert info.value.step == "(6) policy"
    assert [s for s, _ in trace] == list(SNP_STEPS[:5])
    result = verify_snp_report(raw, collateral, now=now, policy=NO_CRL)
    assert result.claims["x-ccai-revocation-checked"] is False
    assert result.claims["x-ccai-revocation-unchecked"] == ["ARK CRL"]


def test_collateral_json_round_trip(vectors: Path) -> None:
    _, collateral, _ = _load(vectors, "snp-azure-milan-v2")
    assert snp_collateral_from_json(collateral.to_json()) == collateral


_GCP: dict[str, Any] = {}


@pytest.fixture(autouse=True, scope="module")
def _gcp(vectors: Path) -> None:
    (raw, _), collateral, now = _load(vectors, "snp-gcp-milan-v5")
    _GCP.update(raw=raw, collateral=collateral, now=now)


#: SIGNING_KEY and friends (report offset 0x48): a flipped bit may claim a VLEK signature, which needs a
#: VLEK certificate the collateral does not hold — refused as missing collateral, never accepted.
_KEY_INFO = range(0x48, 0x4C)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=1183), st.integers(min_value=1, max_value=255))
@example(pos=72, delta=4)
def test_any_changed_byte_fails(pos: int, delta: int) -> None:
    raw = bytearray(_GCP["raw"])
    raw[pos] = (raw[pos] + delta) % 256
    expected: tuple[type[Exception], ...] = (EvidenceError, VerificationError)
    if pos in _KEY_INFO:
        expected = (*expected, CollateralUnavailable)
    with pytest.raises(expected):
        verify_snp_report(bytes(raw), _GCP["collateral"], now=_GCP["now"])

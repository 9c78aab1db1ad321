"""The virtual CPU TEE: exact vendor layouts that G1's verifiers accept — only with its test roots."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccai.errors import PolicyViolation, SignatureError, SimulatedEvidenceRejected, UsageError
from ccai.evidence import SnpProduct, parse_snp_report, parse_tdx_quote
from ccai.verify import TrustAnchors, verify_snp_report, verify_tdx_quote
from ccai.virtual import VirtualCpuTee, open_virtual_vm

NOW = datetime(2027, 2, 3, 4, 5, tzinfo=UTC)
DATA = bytes(range(64))


@pytest.mark.parametrize("version", [4, 5])
def test_tdx_quote_verifies_with_the_test_root_only(ccai_home: Path, version: int) -> None:
    tee = VirtualCpuTee.create(home=ccai_home, tee="tdx", quote_version=version)
    raw = tee.quote(DATA).evidence
    quote = parse_tdx_quote(raw)
    assert quote.version == version and quote.body.report_data == DATA and quote.trailing == b""
    root = tee.trust_anchors().sgx_root
    test_pki = TrustAnchors.simulated_test_pki(sgx_root=root)
    verified = verify_tdx_quote(raw, tee.collateral(NOW), now=NOW, anchors=test_pki, allow_simulated=True)
    assert (
        verified.claims["tcb_status"] == "UpToDate"
        and verified.claims["mr_td"] == tee.td_body_fields()["mr_td"].hex()
    )
    with pytest.raises(SimulatedEvidenceRejected):
        verify_tdx_quote(raw, tee.collateral(NOW), now=NOW)  # the pinned Intel root does not accept it
    with pytest.raises(SimulatedEvidenceRejected):
        verify_tdx_quote(raw, tee.collateral(NOW), now=NOW, anchors=test_pki)  # not asked for by name
    flipped = bytearray(raw)
    flipped[48 + 136] ^= 1  # MRTD, inside the signed body
    with pytest.raises(SignatureError):
        verify_tdx_quote(bytes(flipped), tee.collateral(NOW), now=NOW, anchors=test_pki, allow_simulated=True)


def test_debug_td_is_rejected_by_the_default_policy(ccai_home: Path) -> None:
    tee = VirtualCpuTee.create(home=ccai_home, tee="tdx", debug=True)
    with pytest.raises(PolicyViolation, match="debug"):
        verify_tdx_quote(
            tee.quote(DATA).evidence,
            tee.collateral(NOW),
            now=NOW,
            anchors=TrustAnchors.simulated_test_pki(sgx_root=tee.trust_anchors().sgx_root),
            allow_simulated=True,
        )


def test_snp_report_verifies_with_the_test_roots_only(ccai_home: Path) -> None:
    tee = VirtualCpuTee.create(home=ccai_home, tee="snp")
    quote = tee.quote(DATA)
    report = parse_snp_report(quote.evidence)
    assert report.version == 3 and report.product is SnpProduct.GENOA and report.report_data == DATA
    a = tee.trust_anchors()
    assert a.ark is not None and a.ask is not None
    roots = TrustAnchors.simulated_test_pki(amd_ark=a.ark, amd_ask=a.ask, amd_product=SnpProduct.GENOA)
    verified = verify_snp_report(report, tee.collateral(NOW), now=NOW, anchors=roots, allow_simulated=True)
    assert verified.claims["reported_tcb"] == {"blSPL": 10, "teeSPL": 0, "snpSPL": 23, "ucodeSPL": 84}
    with pytest.raises(SimulatedEvidenceRejected):
        verify_snp_report(report, tee.collateral(NOW), now=NOW)
    flipped = bytearray(quote.evidence)
    flipped[0x90] ^= 1  # MEASUREMENT
    with pytest.raises(SignatureError):
        verify_snp_report(bytes(flipped), tee.collateral(NOW), now=NOW, anchors=roots, allow_simulated=True)


def test_state_persists_and_seeds_are_deterministic(ccai_home: Path, tmp_path: Path) -> None:
    a = VirtualCpuTee.create(home=ccai_home, tee="tdx", seed="same")
    b = VirtualCpuTee.create(home=tmp_path, tee="tdx", seed="same")
    assert a.trust_anchors().sgx_root == b.trust_anchors().sgx_root
    assert (
        parse_tdx_quote(a.quote(DATA).evidence).pck_chain == parse_tdx_quote(b.quote(DATA).evidence).pck_chain
    )
    assert VirtualCpuTee.open(ccai_home).seed == b"same"
    switched, _ = open_virtual_vm(tee="snp", gpus=0, home=ccai_home)
    assert switched.tee == "snp" and switched.seed == b"same"
    (ccai_home / "virtual-tee.json").write_text("{}")
    with pytest.raises(UsageError, match="damaged"):
        VirtualCpuTee.open(ccai_home)

"""Intel PCS and AMD KDS clients against an in-memory HTTP transport serving the real collateral,
the collateral JSON loader, and the pinned public CPU names of collateral/evidence/verify."""

from __future__ import annotations

import json
import urllib.parse
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

import ccai.collateral
import ccai.evidence
import ccai.verify
from ccai.collateral import (
    AmdKdsClient,
    IntelPcsClient,
    SnpCollateral,
    load_certificates,
    raw_json_member,
    tdx_collateral_from_json,
)
from ccai.errors import CollateralUnavailable, MalformedEvidence
from ccai.evidence import SnpProduct, parse_snp_report, parse_tdx_quote
from ccai.verify import snp_rules, verify_snp_report, verify_tdx_quote

CPU_COLLATERAL = {
    "AMD_KDS_URL",
    "INTEL_PCS_URL",
    "INTEL_ROOT_CA_CRL_URL",
    "AmdKdsClient",
    "IntelPcsClient",
    "SnpCollateral",
    "TdxCollateral",
    "load_certificates",
    "raw_json_member",
    "snp_collateral_from_certificates",
    "snp_collateral_from_json",
    "tdx_collateral_from_json",
}
CPU_EVIDENCE = {
    "CcelTable",
    "PckExtensions",
    "QeReport",
    "TdAttributes",
    "TdReportBody",
    "TdxEvent",
    "TdxQuote",
    "TdxQuoteHeader",
    "parse_ccel",
    "parse_ccel_table",
    "parse_json_event_log",
    "parse_pck_extensions",
    "parse_tdx_quote",
    "SnpGuestPolicy",
    "SnpPlatformInfo",
    "SnpProduct",
    "SnpReport",
    "SnpSigningKey",
    "SnpTcbVersion",
    "VcekExtensions",
    "parse_snp_report",
    "parse_vcek_extensions",
}
CPU_VERIFY = {
    "AMD_ARK_SHA256",
    "AMD_ASK_SHA256",
    "AMD_ASVK_SHA256",
    "INTEL_SGX_ROOT_CA_SHA256",
    "SNP_STEPS",
    "TDX_STEPS",
    "TDX_TCB_STATUSES",
    "AmdRoots",
    "SnpVerified",
    "TdxTcbEvaluation",
    "TdxVerified",
    "amd_roots",
    "intel_sgx_root_ca",
    "replay_rtmrs",
    "snp_rules",
    "tdx_rules",
    "verify_snp_report",
    "verify_tdx_quote",
}


def test_cpu_names_are_exported() -> None:
    assert set(ccai.collateral.__all__) >= CPU_COLLATERAL
    assert set(ccai.evidence.__all__) >= CPU_EVIDENCE
    assert set(ccai.verify.__all__) >= CPU_VERIFY


def _pcs_transport(vectors: Path, calls: list[str]) -> httpx.MockTransport:
    """Serve the dcap-qvl sample collateral the way Intel PCS v4 does (JSON bodies, URL-encoded
    issuer-chain headers, DER CRLs)."""
    doc = json.loads((vectors / "cpu/tdx/dcap-qvl/tdx_quote_collateral.json").read_text())

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        path = request.url.path
        if path == "/tdx/certification/v4/tcb":
            if request.url.params.get("fmspc") != "b0c06f000000":
                return httpx.Response(404)
            body = '{"tcbInfo":' + doc["tcb_info"] + ',"signature":"' + doc["tcb_info_signature"] + '"}'
            return httpx.Response(
                200,
                text=body,
                headers={"TCB-Info-Issuer-Chain": urllib.parse.quote(doc["tcb_info_issuer_chain"])},
            )
        if path == "/tdx/certification/v4/qe/identity":
            body = (
                '{"enclaveIdentity":'
                + doc["qe_identity"]
                + ',"signature":"'
                + doc["qe_identity_signature"]
                + '"}'
            )
            chain = urllib.parse.quote(doc["qe_identity_issuer_chain"])
            return httpx.Response(200, text=body, headers={"SGX-Enclave-Identity-Issuer-Chain": chain})
        if path == "/sgx/certification/v4/pckcrl":
            assert request.url.params.get("ca") == "platform"
            chain = urllib.parse.quote(doc["pck_crl_issuer_chain"])
            return httpx.Response(
                200, content=bytes.fromhex(doc["pck_crl"]), headers={"SGX-PCK-CRL-Issuer-Chain": chain}
            )
        if path == "/sgx/certification/v4/rootcacrl":
            return httpx.Response(200, content=doc["root_ca_crl"].encode())  # PCCS serves hex text
        return httpx.Response(404)

    return httpx.MockTransport(handler)


def test_pcs_client_fetches_verifiable_collateral(vectors: Path) -> None:
    calls: list[str] = []
    client = IntelPcsClient(
        "https://pccs.test:8081", client=httpx.Client(transport=_pcs_transport(vectors, calls))
    )
    quote = parse_tdx_quote((vectors / "cpu/tdx/dcap-qvl/tdx_quote").read_bytes())
    collateral = client.tdx_collateral(quote)
    reference = tdx_collateral_from_json((vectors / "cpu/tdx/dcap-qvl/tdx_quote_collateral.json").read_text())
    assert collateral == reference
    now = datetime.fromisoformat("2025-06-20T00:00:00+00:00")
    assert verify_tdx_quote(quote, collateral, now=now).claims["tcb_status"] == "UpToDate"
    assert any("fmspc=b0c06f000000" in c for c in calls)
    client.close()


def test_pcs_client_errors_are_collateral_unavailable(vectors: Path) -> None:
    client = IntelPcsClient("https://pccs.test", client=httpx.Client(transport=_pcs_transport(vectors, [])))
    with pytest.raises(CollateralUnavailable, match="404"):
        client.tdx_tcb_info(bytes.fromhex("00906ea10000"))

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("unreachable", request=request)

    offline = IntelPcsClient(client=httpx.Client(transport=httpx.MockTransport(broken)))
    assert offline.root_ca_crl_url.startswith("https://certificates.trustedservices.intel.com")
    with pytest.raises(CollateralUnavailable, match="cannot fetch"):
        offline.tdx_qe_identity()


def test_cpu_clients_close_only_the_http_client_they_created() -> None:
    lent = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
    for client in (IntelPcsClient(client=lent), AmdKdsClient(client=lent)):
        client.close()
        assert not lent.is_closed
    owned = AmdKdsClient()
    owned.close()
    assert owned._client.is_closed
    lent.close()


def test_raw_json_member_is_byte_exact() -> None:
    body = '{ "tcbInfo" : {"b":1,  "a":[1, 2]} , "signature":"00"}'
    assert raw_json_member(body, "tcbInfo") == '{"b":1,  "a":[1, 2]}'
    with pytest.raises(MalformedEvidence):
        raw_json_member(body, "enclaveIdentity")


def test_collateral_json_accepts_whole_pcs_response(vectors: Path) -> None:
    doc = json.loads((vectors / "cpu/tdx/dcap-qvl/tdx_quote_collateral.json").read_text())
    reference = tdx_collateral_from_json(doc)
    doc["tcb_info"] = (
        '{"tcbInfo":' + doc["tcb_info"] + ',"signature":"' + doc.pop("tcb_info_signature") + '"}'
    )
    assert tdx_collateral_from_json(doc) == reference
    doc["qe_identity"] = json.loads(doc["qe_identity"])
    with pytest.raises(MalformedEvidence, match="raw signed JSON"):
        tdx_collateral_from_json(doc)
    with pytest.raises(MalformedEvidence, match="lacks"):
        tdx_collateral_from_json({"tcb_info": "{}", "tcb_info_signature": "00" * 64})


def test_kds_client(vectors: Path) -> None:
    vcek_der = load_certificates((vectors / "cpu/snp/teekit/sev-gcp-vcek.pem").read_bytes())[0].public_bytes(
        Encoding.DER
    )
    chain_pem = (vectors / "cpu/roots/amd/ask_ark_milan.pem").read_bytes()
    report = parse_snp_report((vectors / "cpu/snp/teekit/sev-gcp.bin").read_bytes())
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path == f"/vcek/v1/Milan/{report.chip_id.hex()}":
            assert dict(request.url.params) == {
                "blSPL": "4",
                "teeSPL": "0",
                "snpSPL": "27",
                "ucodeSPL": "222",
            }
            return httpx.Response(200, content=vcek_der)
        if request.url.path == "/vcek/v1/Milan/cert_chain":
            return httpx.Response(200, content=chain_pem)
        return httpx.Response(404)

    kds = AmdKdsClient(client=httpx.Client(transport=httpx.MockTransport(handler)))
    collateral = kds.snp_collateral(report, SnpProduct.MILAN, with_crl=False)
    assert isinstance(collateral, SnpCollateral)
    # Fetched without the CRL: revocation unchecked, accepted here only by name.
    result = verify_snp_report(
        report,
        collateral,
        now=datetime.fromisoformat("2026-01-01T00:00:00+00:00"),
        policy=snp_rules(allow_unchecked_revocation=True),
    )
    assert result.product is SnpProduct.MILAN
    with pytest.raises(CollateralUnavailable):
        kds.crl(SnpProduct.MILAN)
    turin_url = AmdKdsClient(client=httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(CollateralUnavailable):
        turin_url.vcek(
            SnpProduct.TURIN,
            bytes(range(64)),
            {"fmcSPL": 1, "blSPL": 2, "teeSPL": 3, "snpSPL": 4, "ucodeSPL": 5},
        )
    assert seen[-1].endswith("/vcek/v1/Turin/0001020304050607?fmcSPL=1&blSPL=2&teeSPL=3&snpSPL=4&ucodeSPL=5")


def test_pinned_roots_match_fingerprints() -> None:
    root = ccai.verify.intel_sgx_root_ca()
    assert isinstance(root, x509.Certificate)
    for product in SnpProduct:
        roots = ccai.verify.amd_roots(product)
        assert roots.ark.subject == roots.ark.issuer

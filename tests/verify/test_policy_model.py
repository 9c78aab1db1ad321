"""The one claims-based policy model: every rule on claims, the same policy on a fresh
verification and on a verified token's claims, policy files, and accept-anything warnings."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from ccai.attest import collect_composite, gather_composite_collateral
from ccai.collateral import cpu_collateral_section, embed_collateral
from ccai.errors import (
    BindingError,
    CollateralUnavailable,
    Error,
    MeasurementMismatch,
    PolicyViolation,
    SimulatedEvidenceRejected,
    TcbError,
    UsageError,
)
from ccai.evidence import dump_evidence_bundle, load_evidence_bundle
from ccai.token import TokenSigner, issue_token, jwks, verify_token
from ccai.verify import (
    POLICY_FORMAT,
    AllOf,
    Appraisal,
    ByTee,
    ClaimEquals,
    CpuAllowList,
    CpuDebugOff,
    CpuOnly,
    CpuReportData,
    CpuRevocationChecked,
    DistinctGpus,
    GpuCount,
    MinGpus,
    NotSimulated,
    Policy,
    SnpGuest,
    SnpTcb,
    TdxAttributes,
    TdxEventLogReplayed,
    TdxNoTrailingData,
    TdxTcb,
    UnsafeAcceptAnything,
    VerifiedEvidence,
    appraise,
    default_composite_policy,
    default_policy,
    load_nvidia_policy,
    load_policy,
    snp_rules,
    tdx_rules,
    verify_composite,
)
from ccai.verify._snp import SNP_STEPS
from ccai.verify._tdx import TDX_STEPS
from ccai.virtual import (
    VirtualCpuTee,
    VirtualGpuBackend,
    open_virtual_vm,
    settings_for_virtual_gpu,
    virtual_trust_anchors,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NONCE = bytes(range(32))
DOCS = Path(__file__).resolve().parents[2] / "docs" / "policies"

TDX: dict[str, Any] = {
    "x-ccai-tee": "tdx",
    "debug": False,
    "td_attributes": "0000001000000000",  # SEPT_VE_DISABLE (bit 28), little-endian
    "xfam": "e718060000000000",
    "mr_td": "11" * 48,
    "rtmr0": "22" * 48,
    "report_data": "33" * 64,
    "tcb_status": "UpToDate",
    "advisory_ids": [],
    "tcb_evaluation_data_number": 17,
    "x-ccai-tcb-evaluated": True,
    "x-ccai-revocation-checked": True,
    "x-ccai-revocation-unchecked": [],
    "x-ccai-event-log-replayed": False,
    "x-ccai-trailing-data-zero": True,
    "x-ccai-trailing-data-length": 0,
}
SNP: dict[str, Any] = {
    "x-ccai-tee": "sev-snp",
    "policy": "0x30000",
    "policy_debug": False,
    "policy_migrate_ma": False,
    "policy_smt": True,
    "signing_key": "VCEK",
    "vmpl": 0,
    "guest_svn": 2,
    "platform_info": "0x25",
    "measurement": "44" * 48,
    "host_data": "55" * 32,
    "report_data": "66" * 64,
    "reported_tcb": {"blSPL": 4, "teeSPL": 0, "snpSPL": 27, "ucodeSPL": 222},
    "current_tcb": {"blSPL": 4, "teeSPL": 0, "snpSPL": 27, "ucodeSPL": 222},
    "committed_tcb": {"blSPL": 4, "teeSPL": 0, "snpSPL": 27, "ucodeSPL": 222},
    "current_major": 1,
    "current_minor": 55,
    "x-ccai-committed-equals-current": True,
    "x-ccai-revocation-checked": True,
    "x-ccai-revocation-unchecked": [],
}


def _cpu(base: dict[str, Any], **changes: Any) -> Appraisal:
    return Appraisal.from_claims(overall={}, cpu={**base, **changes})


def _error(policy: Policy, appraisal: Appraisal) -> Error:
    with pytest.raises(Error) as info:
        appraise(policy, appraisal)
    return info.value


def _passes(policy: Policy, appraisal: Appraisal) -> bool:
    return not policy.evaluate(appraisal)


# -- CPU rules on claims ---------------------------------------------------------------------------


def test_policy_steps_match_the_verifiers() -> None:
    assert TDX_STEPS[-1] == "(11) policy" and SNP_STEPS[-1] == "(6) policy"


def test_every_cpu_rule_needs_cpu_claims() -> None:
    rules: list[Policy] = [
        ByTee(tdx=tdx_rules()),
        CpuDebugOff(),
        CpuRevocationChecked(),
        CpuAllowList(claim="mr_td", values=frozenset()),
        CpuReportData(value=bytes(64)),
        TdxTcb(),
        TdxAttributes(),
        TdxNoTrailingData(),
        TdxEventLogReplayed(),
        SnpGuest(),
        SnpTcb(),
        CpuOnly(),
        ClaimEquals(claim="x-ccai-tee", value="tdx", scope="cpu"),
    ]
    for rule in rules:
        (failure,) = rule.evaluate(Appraisal(overall={}))
        assert "no CPU TEE claims" in failure.message, rule


def test_cpu_debug_off() -> None:
    assert _passes(CpuDebugOff(), _cpu(TDX)) and _passes(CpuDebugOff(), _cpu(SNP))
    err = _error(CpuDebugOff(), _cpu(TDX, debug=True))
    assert isinstance(err, PolicyViolation) and err.message == "TD is a debug TD (TDATTRIBUTES.DEBUG set)"
    assert err.step == "(11) policy"
    err = _error(CpuDebugOff(), _cpu(SNP, policy_debug=True))
    assert "POLICY.DEBUG" in err.message and err.step == "(6) policy"
    assert "absent" in _error(CpuDebugOff(), _cpu({"x-ccai-tee": "tdx"})).message


def test_cpu_revocation_checked() -> None:
    assert _passes(CpuRevocationChecked(), _cpu(TDX))
    err = _error(
        CpuRevocationChecked(),
        _cpu(TDX, **{"x-ccai-revocation-checked": False, "x-ccai-revocation-unchecked": ["PCK CRL"]}),
    )
    assert isinstance(err, CollateralUnavailable) and "lacks the PCK CRL" in err.message
    err = _error(
        CpuRevocationChecked(),
        _cpu(SNP, **{"x-ccai-revocation-checked": False, "x-ccai-revocation-unchecked": ["ARK CRL"]}),
    )
    assert isinstance(err, CollateralUnavailable)
    assert err.message.startswith("revocation was not checked: no ARK CRL")
    # Claims without the fact (an older token) do not pass.
    assert not _passes(CpuRevocationChecked(), _cpu({"x-ccai-tee": "sev-snp"}))


def test_cpu_allow_list_and_report_data() -> None:
    rule = CpuAllowList(claim="mr_td", values=frozenset({bytes.fromhex("11" * 48)}))
    assert _passes(rule, _cpu(TDX))
    err = _error(rule, _cpu(TDX, mr_td="00" * 48))
    assert isinstance(err, MeasurementMismatch) and err.message == "MRTD is not an allowed value"
    assert isinstance(_error(CpuAllowList(claim="rtmr0", values=frozenset()), _cpu(TDX)), MeasurementMismatch)
    assert "absent" in _error(CpuAllowList(claim="rtmr3", values=frozenset()), _cpu(TDX)).message
    assert _passes(CpuReportData(value=bytes.fromhex("33" * 64)), _cpu(TDX))
    err = _error(CpuReportData(value=bytes(64)), _cpu(TDX))
    assert isinstance(err, BindingError) and "REPORTDATA" in err.message
    assert "REPORT_DATA" in _error(CpuReportData(value=bytes(64)), _cpu(SNP)).message


def test_tdx_tcb() -> None:
    assert _passes(TdxTcb(), _cpu(TDX))
    err = _error(TdxTcb(), _cpu(TDX, tcb_status="OutOfDate", advisory_ids=["INTEL-SA-00837"]))
    assert isinstance(err, TcbError) and "OutOfDate" in err.message and "INTEL-SA-00837" in str(err.actual)
    lenient = TdxTcb(accepted_statuses=frozenset({"UpToDate", "OutOfDate"}))
    assert _passes(lenient, _cpu(TDX, tcb_status="OutOfDate"))
    rejected = TdxTcb(rejected_advisory_ids=frozenset({"INTEL-SA-00837"}))
    assert isinstance(_error(rejected, _cpu(TDX, advisory_ids=["INTEL-SA-00837"])), TcbError)
    assert isinstance(_error(TdxTcb(min_tcb_evaluation_data_number=18), _cpu(TDX)), TcbError)
    assert _passes(TdxTcb(min_tcb_evaluation_data_number=17), _cpu(TDX))
    unevaluated = _cpu(TDX, tcb_status=None, **{"x-ccai-tcb-evaluated": False})
    assert isinstance(_error(TdxTcb(), unevaluated), CollateralUnavailable)
    assert _passes(TdxTcb(allow_not_evaluated=True), unevaluated)
    with pytest.raises(UsageError, match="status"):
        TdxTcb(accepted_statuses=frozenset({"Fine"}))


def test_tdx_attributes_trailing_data_and_event_log() -> None:
    assert _passes(TdxAttributes(require_sept_ve_disable=True), _cpu(TDX))
    err = _error(TdxAttributes(require_sept_ve_disable=True), _cpu(TDX, td_attributes="00" * 8))
    assert "SEPT_VE_DISABLE" in err.message
    bound = _cpu(TDX, mr_servicetd="01" * 48)
    assert "MRSERVICETD" in _error(TdxAttributes(), bound).message
    assert _passes(TdxAttributes(allow_mr_servicetd=True), bound)
    assert _passes(TdxNoTrailingData(), _cpu(TDX))
    junk = _cpu(TDX, **{"x-ccai-trailing-data-zero": False, "x-ccai-trailing-data-length": 4})
    assert "non-zero bytes follow" in _error(TdxNoTrailingData(), junk).message
    assert "event log" in _error(TdxEventLogReplayed(), _cpu(TDX)).message
    assert _passes(TdxEventLogReplayed(), _cpu(TDX, **{"x-ccai-event-log-replayed": True}))


def test_snp_guest() -> None:
    assert _passes(SnpGuest(), _cpu(SNP))
    assert "migration agent" in _error(SnpGuest(), _cpu(SNP, policy_migrate_ma=True)).message
    assert "SMT" in _error(SnpGuest(allow_smt=False), _cpu(SNP)).message
    assert (
        "VLEK"
        in _error(SnpGuest(allowed_signing_keys=frozenset({"VCEK"})), _cpu(SNP, signing_key="VLEK")).message
    )
    assert "VMPL" in _error(SnpGuest(allowed_vmpls=frozenset({0})), _cpu(SNP, vmpl=1)).message
    assert "GUEST_SVN" in _error(SnpGuest(min_guest_svn=3), _cpu(SNP)).message
    assert _passes(SnpGuest(required_platform_info=0x1, forbidden_platform_info=0x2), _cpu(SNP))
    assert "clear" in _error(SnpGuest(required_platform_info=0x2), _cpu(SNP)).message
    assert "set" in _error(SnpGuest(forbidden_platform_info=0x1), _cpu(SNP)).message
    with pytest.raises(UsageError):
        SnpGuest(allowed_signing_keys=frozenset({"VCEK", "ARK"}))


def test_snp_tcb() -> None:
    floor = SnpTcb(min_tcb={"blSPL": 4, "snpSPL": 27, "ucodeSPL": 222}, min_firmware=(1, 55))
    assert _passes(floor, _cpu(SNP))
    err = _error(SnpTcb(min_tcb={"ucodeSPL": 223}), _cpu(SNP))
    assert isinstance(err, TcbError) and "223" in str(err.actual)
    assert isinstance(_error(SnpTcb(min_firmware=(1, 56)), _cpu(SNP)), TcbError)
    provisional = _cpu(SNP, **{"x-ccai-committed-equals-current": False})
    assert "COMMITTED_TCB" in _error(SnpTcb(require_committed_tcb=True), provisional).message
    with pytest.raises(UsageError):
        SnpTcb(min_tcb={"microcode": 1})


def test_by_tee_and_the_rule_sets() -> None:
    either = ByTee(tdx=tdx_rules(), snp=snp_rules())
    assert _passes(either, _cpu(TDX)) and _passes(either, _cpu(SNP))
    only_tdx = ByTee(tdx=tdx_rules())
    assert "'sev-snp' is not accepted" in _error(only_tdx, _cpu(SNP)).message
    # TDX rules on SNP claims fail at the first rule (the TEE).
    assert not _passes(tdx_rules(), _cpu(SNP))
    # snp_rules reports a policy problem before missing revocation data.
    unchecked = {"x-ccai-revocation-checked": False, "x-ccai-revocation-unchecked": ["ARK CRL"]}
    assert isinstance(_error(snp_rules(), _cpu(SNP, policy_debug=True, **unchecked)), PolicyViolation)
    assert isinstance(_error(snp_rules(), _cpu(SNP, **unchecked)), CollateralUnavailable)
    assert _passes(snp_rules(allow_unchecked_revocation=True), _cpu(SNP, **unchecked))
    # tdx_rules reports missing revocation data before the TCB status.
    no_crl = {"x-ccai-revocation-checked": False, "x-ccai-revocation-unchecked": ["PCK CRL"]}
    err = _error(tdx_rules(), _cpu(TDX, tcb_status="OutOfDate", **no_crl))
    assert isinstance(err, CollateralUnavailable)
    err = _error(tdx_rules(allow_missing_pck_crl=True), _cpu(TDX, tcb_status="OutOfDate", **no_crl))
    assert isinstance(err, TcbError)
    with pytest.raises(UsageError, match="48 bytes"):
        tdx_rules(mr_td=["00"])
    with pytest.raises(UsageError, match="hex"):
        snp_rules(host_data=["zz"])


# -- composite rules -----------------------------------------------------------------------------


def _gpus(*ueids: str, simulated: bool = False) -> Appraisal:
    gpus = [{"ueid": u, "x-ccai-simulated": simulated} for u in ueids]
    return Appraisal.from_claims(overall={"x-ccai-simulated": simulated}, gpus=gpus, cpu=TDX)


def test_gpu_count_min_gpus_distinct_and_cpu_only() -> None:
    assert _passes(GpuCount(count=2), _gpus("1", "2"))
    assert "requires 3" in _error(GpuCount(count=3), _gpus("1", "2")).message
    assert "CPU-only deployment must say so" in _error(MinGpus(), _gpus()).message
    assert _passes(MinGpus(minimum=0), _gpus())
    assert _passes(DistinctGpus(), _gpus("1", "2"))
    err = _error(DistinctGpus(), _gpus("1", "1"))
    assert err.message == "GPU-1: the same device as GPU-0 (ueid 1)"
    assert "ueid is absent" in _error(DistinctGpus(), _gpus("")).message
    assert _passes(CpuOnly(), _gpus())
    assert not _passes(CpuOnly(), _gpus("1"))
    with pytest.raises(UsageError):
        GpuCount(count=-1)


def test_not_simulated_unless_allowed_by_name() -> None:
    simulated = _gpus("1", simulated=True)
    err = _error(NotSimulated(), simulated)
    assert isinstance(err, SimulatedEvidenceRejected)
    assert _passes(NotSimulated(), dataclasses.replace(simulated, allow_simulated=True))
    cpu_only = Appraisal.from_claims(overall={}, cpu={**TDX, "x-ccai-simulated": True})
    assert "CPU claims" in _error(NotSimulated(), cpu_only).message
    assert not _passes(default_policy(), simulated)
    assert "not simulated" not in default_policy(allow_simulated=True).describe()


def test_default_composite_policy_on_claims() -> None:
    composite = default_composite_policy(gpu=AllOf(policies=(ClaimEquals(claim="ueid", value="1"),)))
    assert _passes(composite, _gpus("1"))
    assert "at least 1" in _error(composite, _gpus()).message
    assert _passes(
        default_composite_policy(gpu=ClaimEquals(claim="ueid", value="1"), allow_no_gpus=True), _gpus()
    )


def test_from_claims_orders_gpu_submodules() -> None:
    appraisal = Appraisal.from_claims(overall={}, gpus={"GPU-1": {"ueid": "b"}, "GPU-0": {"ueid": "a"}})
    assert [g["ueid"] for g in appraisal.gpus] == ["a", "b"]
    with pytest.raises(UsageError, match="CPU-0"):
        Appraisal.from_claims(overall={}, gpus={"GPU-0": {}, "CPU-0": {}})
    with pytest.raises(UsageError, match="gaps"):
        Appraisal.from_claims(overall={}, gpus={"GPU-0": {}, "GPU-2": {}})
    with pytest.raises(UsageError):
        Appraisal.from_verified({})  # type: ignore[arg-type]


# -- the same policy on a fresh verification and on a verified token ------------------------------


class _InProcessSource:
    """RIMs and OCSP answers straight from the virtual GPU and the dev server's responder."""

    def __init__(self, backend: VirtualGpuBackend) -> None:
        self.backend = backend
        self.responder = settings_for_virtual_gpu(backend, clock=lambda: NOW).responder

    def rim(self, rim_id: str) -> bytes:
        return self.backend.rim(rim_id)

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA384())
        if nonce:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        return self.responder.respond(builder.build().public_bytes(Encoding.DER))


@pytest.fixture(scope="module")
def verified_vm(tmp_path_factory: pytest.TempPathFactory) -> tuple[VerifiedEvidence, Appraisal]:
    """A virtual TDX VM with two GPUs, verified; and the claims of a token issued for it."""
    home = tmp_path_factory.mktemp("vm")
    cpu, gpu = open_virtual_vm(tee="tdx", gpus=2, home=home, seed="policy")
    assert isinstance(cpu, VirtualCpuTee) and isinstance(gpu, VirtualGpuBackend)
    bundle = collect_composite(nonce=NONCE, cpu=cpu, gpu=gpu, hpke_public_key=b"\x07" * 32)
    coll = gather_composite_collateral(bundle, now=NOW, gpu_source=_InProcessSource(gpu))
    coll = dataclasses.replace(coll, cpu=cpu_collateral_section(cpu.collateral(NOW)))
    bundle = load_evidence_bundle(dump_evidence_bundle(embed_collateral(bundle, coll)))
    verified = verify_composite(
        bundle,
        now=NOW,
        allow_simulated=True,
        expected_nonce=NONCE,
        anchors=virtual_trust_anchors(home, gpu=True, tdx=True),
    )
    signer = TokenSigner.generate(development=True)
    token = verify_token(
        issue_token(verified, signing_key=signer, now=NOW).dumps(),
        jwks=jwks([signer]),
        nonce=NONCE,
        now=NOW,
        allow_simulated=True,
    )
    from_token = Appraisal.from_claims(
        overall=token.overall,
        gpus={k: v for k, v in token.submods.items() if k.startswith("GPU-")},
        cpu=token.submods["CPU-0"],
    )
    return verified, from_token


def _outcome(policy: Policy, appraisal: Appraisal) -> list[tuple[str, str, type[Error]]]:
    return [(f.rule, f.message, f.error) for f in policy.evaluate(appraisal)]


POLICIES: dict[str, Policy] = {
    "default-composite": default_composite_policy(),
    "development-file": load_policy(DOCS / "development-simulated.json"),
    "production-file": load_policy(DOCS / "production-tdx-h100.json"),
    "three-gpus": AllOf(policies=(GpuCount(count=3), default_composite_policy(allow_simulated=True))),
    "mrtd": default_composite_policy(allow_simulated=True, tdx=tdx_rules(mr_td=[bytes(48)])),
    "debug-off-only": AllOf(policies=(CpuDebugOff(), DistinctGpus(), default_policy(allow_simulated=True))),
}


@pytest.mark.parametrize("name", list(POLICIES))
@pytest.mark.parametrize("allow_simulated", [False, True])
def test_same_policy_same_result_on_verification_and_token(
    verified_vm: tuple[VerifiedEvidence, Appraisal], name: str, allow_simulated: bool
) -> None:
    verified, from_token = verified_vm
    fresh = Appraisal.from_verified(verified, allow_simulated=allow_simulated)
    token = dataclasses.replace(from_token, allow_simulated=allow_simulated)
    assert len(fresh.gpus) == len(token.gpus) == 2
    assert _outcome(POLICIES[name], fresh) == _outcome(POLICIES[name], token)


def test_expected_outcomes_on_the_virtual_vm(verified_vm: tuple[VerifiedEvidence, Appraisal]) -> None:
    verified, from_token = verified_vm
    for appraisal in (Appraisal.from_verified(verified), from_token):
        allowed = dataclasses.replace(appraisal, allow_simulated=True)
        assert isinstance(_error(POLICIES["default-composite"], appraisal), SimulatedEvidenceRejected)
        appraise(POLICIES["default-composite"], allowed)
        appraise(POLICIES["development-file"], appraisal)  # the file allows simulation by name
        # The example pins an MRTD the virtual TD does not have (CPU rules come before the GPU count).
        assert isinstance(_error(POLICIES["production-file"], allowed), MeasurementMismatch)
        assert "requires 3" in _error(POLICIES["three-gpus"], allowed).message
        assert isinstance(_error(POLICIES["mrtd"], allowed), MeasurementMismatch)
        appraise(POLICIES["debug-off-only"], allowed)


def test_composite_policy_step_raises_the_policy_error(
    verified_vm: tuple[VerifiedEvidence, Appraisal],
) -> None:
    verified, _ = verified_vm
    assert verified.cpu_claims is not None
    assert verified.cpu_claims["x-ccai-revocation-checked"] is True
    assert verified.cpu_claims["x-ccai-tcb-evaluated"] is True


# -- policy files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(DOCS.glob("*.json")), ids=lambda p: p.name)
def test_example_files_load_and_round_trip(path: Path) -> None:
    doc = json.loads(path.read_text())
    assert doc["format"] == POLICY_FORMAT
    sources: list[Any] = [path, str(path), path.read_bytes(), path.read_text(), json.loads(json.dumps(doc))]
    loaded = [load_policy(source, name=path.name) for source in sources]
    assert len({p.describe() for p in loaded}) == 1
    assert all(p == loaded[0] for p in loaded)


def test_the_cpu_only_example(verified_vm: tuple[VerifiedEvidence, Appraisal]) -> None:
    policy = load_policy(DOCS / "cpu-only-snp.json")
    snp_only = Appraisal.from_claims(overall={}, cpu=SNP)
    assert "SMT" in _error(policy, snp_only).message  # the example refuses SMT
    appraise(policy, Appraisal.from_claims(overall={}, cpu={**SNP, "policy_smt": False}))
    assert (
        "exactly 0 GPU"
        in _error(policy, Appraisal.from_claims(overall={}, gpus=[{}], cpu={**SNP, "policy_smt": False})).hint
    )  # type: ignore[operator]
    del verified_vm


def test_nvidia_files_load_into_the_same_model(vectors: Path) -> None:
    path = next(vectors.rglob("NVGPULocalv4PolicyExample.json"))
    gpu_part = load_policy(path, part="gpu")
    text = gpu_part.describe()
    assert "CC mode on" in text and "CC DevTools off" in text and "NVGPULocalv4PolicyExample.json" in text
    assert "CPU TEE" in load_policy(path).describe()  # composite: the CPU default applies too
    assert load_nvidia_policy(str(path)) == load_nvidia_policy(path)


def test_old_tdx_snp_layout_is_the_cpu_section() -> None:
    old = load_policy({"tdx": {"allow_debug": True}}, part="cpu")
    assert _passes(old, _cpu(TDX, debug=True))
    assert not _passes(old, _cpu(SNP, policy_debug=True))  # SNP keeps the default rules


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"format": POLICY_FORMAT, "cpu": {"tdx": {"mrtd": []}}}, "unknown key 'cpu.tdx.mrtd'"),
        ({"format": POLICY_FORMAT, "gpus": {"count": "8"}}, "gpus.count"),
        ({"format": "ccai-policy/9"}, "format"),
        ({"format": POLICY_FORMAT, "colour": "blue"}, "unknown key 'colour'"),
        ({"format": POLICY_FORMAT, "cpu": {"tdx": {"mr_td": ["00"]}}}, "48 bytes"),
        ({"format": POLICY_FORMAT, "cpu": {"tees": ["tdx"], "snp": {}}}, "not in cpu.tees"),
        ({"format": POLICY_FORMAT, "cpu": None, "gpu": None}, "checks neither"),
        ({"format": POLICY_FORMAT, "unsafe_accept_anything": True, "gpu": {}}, "cannot be combined"),
        ({"format": POLICY_FORMAT, "gpu": {"nvidia_policy": {"authorization-rules": {}}}}, "NRAS v1"),
        ({"rules": []}, "not a ccai policy"),
        ([], "JSON object"),
    ],
)
def test_bad_policy_files_are_usage_errors(doc: Any, reason: str) -> None:
    with pytest.raises(UsageError) as info:
        load_policy(json.dumps(doc).encode(), name="bad.json")
    assert reason in info.value.message
    assert "\n" not in info.value.message and "bad.json" in info.value.message


def test_unreadable_and_non_json_policy(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        load_policy(tmp_path / "missing.json")
    with pytest.raises(UsageError, match="not JSON"):
        load_policy(b"{not json")


def test_cpu_and_gpu_parts() -> None:
    cpu_only = {"format": POLICY_FORMAT, "gpus": {"count": 0}, "gpu": None}
    with pytest.raises(UsageError, match="no GPU rules"):
        load_policy(cpu_only, part="gpu")
    with pytest.raises(UsageError, match="no CPU rules"):
        load_policy({"format": POLICY_FORMAT, "cpu": None}, part="cpu")
    assert "CPU TEE" not in load_policy({"format": POLICY_FORMAT}, part="gpu").describe()


# -- accept-anything warnings ------------------------------------------------------------------------


def test_accept_anything_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ccai.verify.policy"):
        appraise(UnsafeAcceptAnything(), Appraisal(overall={}))
    assert any("UnsafeAcceptAnything" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ccai.verify.policy"):
        policy = load_policy({"format": POLICY_FORMAT, "unsafe_accept_anything": True}, name="open.json")
    assert isinstance(policy, UnsafeAcceptAnything)
    assert [r.name for r in caplog.records] == ["ccai.verify.policy"]
    assert "open.json accepts anything" in caplog.records[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ccai.verify.policy"):
        load_policy(DOCS / "production-tdx-h100.json")
    assert not caplog.records


def test_policy_model_is_exported() -> None:
    import ccai.verify

    assert set(ccai.verify.__all__) >= {
        "Appraisal",
        "Policy",
        "PolicyFailure",
        "appraise",
        "load_policy",
        "POLICY_FORMAT",
        "default_policy",
        "default_composite_policy",
        "tdx_rules",
        "snp_rules",
        "ByTee",
        "CpuDebugOff",
        "CpuRevocationChecked",
        "CpuAllowList",
        "CpuReportData",
        "TdxTcb",
        "TdxAttributes",
        "TdxNoTrailingData",
        "TdxEventLogReplayed",
        "SnpGuest",
        "SnpTcb",
        "GpuCount",
        "MinGpus",
        "DistinctGpus",
        "CpuOnly",
        "NotSimulated",
        "UnsafeAcceptAnything",
    }
    assert not {"TdxPolicy", "SnpPolicy"} & set(ccai.verify.__all__)

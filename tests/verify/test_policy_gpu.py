"""Appraisal policies: combinators, rules, and NVIDIA's JSON policies evaluated as NVIDIA documents them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from ccai.errors import (
    CertificateRevoked,
    CollateralUnavailable,
    MeasurementMismatch,
    PolicyViolation,
    UsageError,
)
from ccai.verify import (
    AllOf,
    AnyOf,
    Appraisal,
    CcModeOn,
    ClaimEquals,
    ClaimIn,
    DevToolsOff,
    MeasurementIndexAllowList,
    MinVersion,
    RevocationGood,
    UnsafeAcceptAnything,
    default_policy,
    load_nvidia_policy,
)

SDK = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/attestation_sdk/tests"


def _json(vectors: Path, rel: str) -> Any:
    return json.loads((vectors / SDK / rel).read_text())


def _gpu(**overrides: Any) -> dict[str, Any]:
    chain = {
        "x-nvidia-cert-status": "valid",
        "x-nvidia-cert-ocsp-status": "good",
        "x-nvidia-cert-revocation-reason": None,
    }
    claims: dict[str, Any] = {
        "measres": "success",
        "x-nvidia-mismatch-measurement-records": None,
        "x-nvidia-gpu-driver-version": "550.90.07",
        "x-nvidia-gpu-vbios-version": "96.00.9F.00.01",
        "x-nvidia-gpu-attestation-report-cert-chain": dict(chain),
        "x-nvidia-gpu-driver-rim-cert-chain": dict(chain),
        "x-nvidia-gpu-vbios-rim-cert-chain": dict(chain),
        "x-ccai-cc-mode": "on",
        "ueid": "439183498462637957406932839154328458410393718015",
    }
    claims.update(overrides)
    return claims


def _appraisal(*gpus: dict[str, Any], **overall: Any) -> Appraisal:
    return Appraisal(overall={"x-nvidia-overall-att-result": True, **overall}, gpus=tuple(gpus))


# -- combinators and rules -------------------------------------------------------------------------


def test_empty_all_of_and_any_of_fail() -> None:
    assert AllOf(policies=()).evaluate(_appraisal(_gpu()))
    assert AnyOf(policies=()).evaluate(_appraisal(_gpu()))


def test_any_of_passes_when_one_alternative_does() -> None:
    policy = AnyOf(
        policies=(ClaimEquals(claim="measres", value="fail"), ClaimEquals(claim="measres", value="success"))
    )
    assert policy.evaluate(_appraisal(_gpu())) == ()
    failures = AnyOf(policies=(ClaimEquals(claim="measres", value="fail"),)).evaluate(_appraisal(_gpu()))
    assert failures and "no alternative" in failures[0].message


def test_claim_rules_apply_to_every_gpu() -> None:
    appraisal = _appraisal(_gpu(), _gpu(**{"x-nvidia-gpu-driver-version": "535.86.09"}))
    failures = MinVersion(claim="x-nvidia-gpu-driver-version", minimum="550.90").evaluate(appraisal)
    assert [f.gpu for f in failures] == [1]
    assert ClaimIn(claim="x-nvidia-gpu-driver-version", values=("550.90.07",)).evaluate(appraisal)[0].gpu == 1
    nested = ClaimEquals(claim=("x-nvidia-gpu-driver-rim-cert-chain", "x-nvidia-cert-status"), value="valid")
    assert nested.evaluate(appraisal) == ()
    assert ClaimEquals(claim="absent-claim", value=1).evaluate(appraisal)[0].message.endswith("absent")
    assert (
        ClaimEquals(claim="x-nvidia-overall-att-result", value=True, scope="overall").evaluate(appraisal)
        == ()
    )


def test_min_version_hex_components() -> None:
    appraisal = _appraisal(_gpu(**{"x-nvidia-gpu-vbios-version": "96.00.1F.00.01"}))
    rule = MinVersion(claim="x-nvidia-gpu-vbios-version", minimum="96.00.20.00.00", hex_parts=True)
    assert rule.evaluate(appraisal)  # 0x1F < 0x20
    assert not MinVersion(claim="x-nvidia-gpu-vbios-version", minimum="96.00.1E", hex_parts=True).evaluate(
        appraisal
    )
    with pytest.raises(UsageError):
        MinVersion(claim="x", minimum="not a version")


def test_measurement_allow_list() -> None:
    records = [{"index": 9, "goldenValue": "aa", "runtimeValue": "bb"}]
    failing = _appraisal(_gpu(measres="fail", **{"x-nvidia-mismatch-measurement-records": records}))
    [failure] = MeasurementIndexAllowList().evaluate(failing)
    assert failure.error is MeasurementMismatch and "[9]" in failure.message
    assert failure.expected == "aa" and failure.actual == "bb"
    error = failure.to_error()
    assert error.index == "GPU-0 measurement index 9" and "step:     (9) measurements" in error.diagnostics()
    assert MeasurementIndexAllowList(indices=frozenset({9})).evaluate(failing) == ()
    # A failed comparison without records (e.g. claims from elsewhere) is never waved through.
    assert MeasurementIndexAllowList(indices=frozenset({9})).evaluate(_appraisal(_gpu(measres="fail")))


def test_revocation_rule_maps_statuses_to_errors() -> None:
    def with_status(status: str, reason: str | None = None) -> Appraisal:
        gpu = _gpu()
        gpu["x-nvidia-gpu-driver-rim-cert-chain"].update(
            {"x-nvidia-cert-ocsp-status": status, "x-nvidia-cert-revocation-reason": reason}
        )
        return _appraisal(gpu)

    assert RevocationGood().evaluate(with_status("good")) == ()
    assert RevocationGood().evaluate(with_status("not-checked"))[0].error is CollateralUnavailable
    assert RevocationGood(allow_not_checked=True).evaluate(with_status("not-checked")) == ()
    hold = with_status("revoked", "certificateHold")
    assert RevocationGood().evaluate(hold)[0].error is CertificateRevoked
    assert RevocationGood(allow_reasons=frozenset({"certificateHold"})).evaluate(hold) == ()
    assert RevocationGood(allow_reasons=frozenset({"certificateHold"})).evaluate(
        with_status("revoked", "keyCompromise")
    )


def test_cc_mode_and_devtools_rules() -> None:
    assert CcModeOn().evaluate(_appraisal(_gpu())) == ()
    assert CcModeOn().evaluate(_appraisal(_gpu(**{"x-ccai-cc-mode": "off"})))
    assert DevToolsOff().evaluate(_appraisal(_gpu(**{"x-ccai-cc-mode": "devtools"})))
    # Not reported: only fully matching measurements establish the mode.
    assert DevToolsOff().evaluate(_appraisal(_gpu(**{"x-ccai-cc-mode": None}))) == ()
    assert DevToolsOff().evaluate(_appraisal(_gpu(measres="fail", **{"x-ccai-cc-mode": None})))


def test_default_policy_order_and_errors() -> None:
    policy = default_policy()
    assert policy.evaluate(_appraisal(_gpu())) == ()
    devtools = _appraisal(_gpu(**{"x-ccai-cc-mode": "devtools"}))
    assert policy.evaluate(devtools)[0].to_error().__class__ is PolicyViolation
    assert "DevTools" in policy.describe()


def test_unsafe_accept_anything_is_named_loudly() -> None:
    assert UnsafeAcceptAnything().evaluate(_appraisal()) == ()
    assert "UNSAFE" in UnsafeAcceptAnything().describe()


# -- NVIDIA JSON policies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "overall", "detached"),
    [
        (
            "policies/local/NVGPULocalPolicyExample.json",
            "overall_claims_local.json",
            "detached_claims_local.json",
        ),
        (
            "policies/local/NVGPULocalv4PolicyExample.json",
            "overall_granular_claims_local.json",
            "detached_granular_claims_local.json",
        ),
        (
            "policies/remote/v3/NVGPURemotePolicyExample.json",
            "overall_claims_remote.json",
            "detached_claims_remote.json",
        ),
        (
            "policies/remote/v4/NVGPURemotePolicyExample.json",
            "overall_granular_claims_remote.json",
            "detached_granular_claims_remote.json",
        ),
    ],
)
def test_nvidia_policies_accept_nvidias_example_claims(
    vectors: Path, policy: str, overall: str, detached: str
) -> None:
    rules = load_nvidia_policy(vectors / SDK / policy, defer_token_claims=False)
    overall_claims = _json(vectors, f"pytests/data/gpu/{overall}")
    detached_claims = _json(vectors, f"pytests/data/gpu/{detached}")
    assert rules.evaluate(Appraisal(overall=overall_claims, gpus=(detached_claims,))) == ()

    # Any required claim changed → rejected, naming the claim.
    for key, value in rules.detached_claims.items():
        tampered = copy.deepcopy(detached_claims)
        tampered[key] = {"x-nvidia-cert-status": "expired"} if not isinstance(value, bool | str) else "other"
        failures = rules.evaluate(Appraisal(overall=overall_claims, gpus=(tampered,)))
        assert failures and key in failures[0].message and failures[0].gpu == 0
    # Removing a required claim → rejected; extra claims are ignored.
    missing = {k: v for k, v in detached_claims.items() if k != "measres"}
    assert "absent" in rules.evaluate(Appraisal(overall=overall_claims, gpus=(missing,)))[0].message
    extra = {**detached_claims, "x-extra": 1}
    assert rules.evaluate(Appraisal(overall=overall_claims, gpus=(extra,))) == ()


def test_nvidia_policy_bool_is_not_int(vectors: Path) -> None:
    rules = load_nvidia_policy(vectors / SDK / "policies/local/NVGPULocalPolicyExample.json")
    claims = _json(vectors, "pytests/data/gpu/detached_claims_local.json")
    claims["x-nvidia-gpu-arch-check"] = 1
    overall = _json(vectors, "pytests/data/gpu/overall_claims_local.json")
    assert rules.evaluate(Appraisal(overall=overall, gpus=(claims,)))


def test_token_only_claims_are_deferred_during_verification(vectors: Path) -> None:
    deferred = load_nvidia_policy(vectors / SDK / "policies/local/NVGPULocalPolicyExample.json")
    strict = load_nvidia_policy(
        vectors / SDK / "policies/local/NVGPULocalPolicyExample.json", defer_token_claims=False
    )
    overall = {
        k: v for k, v in _json(vectors, "pytests/data/gpu/overall_claims_local.json").items() if k != "iss"
    }
    detached = _json(vectors, "pytests/data/gpu/detached_claims_local.json")
    assert deferred.evaluate(Appraisal(overall=overall, gpus=(detached,))) == ()
    assert "iss" in strict.evaluate(Appraisal(overall=overall, gpus=(detached,)))[0].message
    # Present but different is a failure either way.
    assert deferred.evaluate(Appraisal(overall={**overall, "iss": "someone"}, gpus=(detached,)))


def test_nvidia_policy_loader_refuses_bad_shapes(vectors: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="NRAS v1"):
        load_nvidia_policy(vectors / SDK / "policies/remote/v1/NVGPURemotePolicyExample.json")
    with pytest.raises(UsageError, match="type must be 'JWT'"):
        load_nvidia_policy({"authorization-rules": {"type": "CWT", "overall-claims": {"a": 1}}})
    with pytest.raises(UsageError, match="accept-anything"):
        load_nvidia_policy({"authorization-rules": {"type": "JWT"}})
    with pytest.raises(UsageError, match="not JSON"):
        load_nvidia_policy(b"{")
    with pytest.raises(UsageError, match="cannot read"):
        load_nvidia_policy(tmp_path / "missing.json")

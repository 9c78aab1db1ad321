"""ccai's JSON policy files (``"format": "ccai-policy/1"``), loaded into the one policy model.

The file is validated strictly at this JSON edge (pydantic, frozen, ``extra="forbid"``): an
unknown key, a wrong type or a badly encoded value is a :class:`~ccai.errors.UsageError` that
names the key in one line. Two other layouts load into the same model:

* NVIDIA's ``authorization-rules`` files (auto-detected), as the GPU rules of a ccai policy with
  ccai's defaults (revocation, measurements, CC mode on, DevTools off) in front of them — NVIDIA's
  files do not check CC mode, and a file cannot switch that off;
* the older ``{"tdx": {…}, "snp": {…}}`` layout, as the ``cpu`` section.

The format is documented in ``docs/policies.md``; examples live in ``docs/policies/``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ccai._json import load_json
from ccai.errors import UsageError
from ccai.verify._cpu_policy import ByTee, snp_rules, tdx_rules
from ccai.verify._nvidia_policy import load_nvidia_policy
from ccai.verify._policy import (
    AllOf,
    CcModeOn,
    ClaimEquals,
    CpuOnly,
    DevToolsOff,
    DistinctGpus,
    GpuCount,
    MeasurementIndexAllowList,
    MinGpus,
    MinVersion,
    NotSimulated,
    Policy,
    RevocationGood,
    UnsafeAcceptAnything,
    accepts_anything,
    logger,
)
from ccai.verify._ppcie_policy import PpcieMode, PpcieTopology, SwitchesVerified

__all__ = ["POLICY_FORMAT", "load_policy"]

#: The ``format`` value of a ccai policy file.
POLICY_FORMAT = "ccai-policy/1"

Part = Literal["all", "cpu", "gpu", "switch"]
_HexValues = list[str] | str | None


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class _Tdx(_Model):
    accepted_tcb_statuses: list[str] = ["UpToDate"]
    rejected_advisory_ids: list[str] = []
    min_tcb_evaluation_data_number: int | None = None
    allow_debug: bool = False
    require_sept_ve_disable: bool = False
    allow_mr_servicetd: bool = False
    mr_td: _HexValues = None
    mr_config_id: _HexValues = None
    mr_owner: _HexValues = None
    mr_owner_config: _HexValues = None
    rtmr0: _HexValues = None
    rtmr1: _HexValues = None
    rtmr2: _HexValues = None
    rtmr3: _HexValues = None
    xfam: _HexValues = None
    td_attributes: _HexValues = None
    report_data: str | None = None
    require_event_log: bool = False
    allow_missing_collateral: bool = False
    allow_missing_pck_crl: bool = False
    allow_trailing_data: bool = False


class _Snp(_Model):
    allow_debug: bool = False
    allow_migrate_ma: bool = False
    allow_smt: bool = True
    allowed_vmpls: list[int] | None = None
    allowed_signing_keys: list[str] = ["VCEK", "VLEK"]
    measurement: _HexValues = None
    host_data: _HexValues = None
    id_key_digest: _HexValues = None
    author_key_digest: _HexValues = None
    report_data: str | None = None
    min_tcb: dict[str, int] | None = None
    min_firmware: list[int] | None = None
    require_committed_tcb: bool = False
    required_platform_info: int = 0
    forbidden_platform_info: int = 0
    min_guest_svn: int | None = None
    allow_unchecked_revocation: bool = False


class _Cpu(_Model):
    tees: list[Literal["tdx", "snp"]] = ["tdx", "snp"]
    tdx: _Tdx | None = None
    snp: _Snp | None = None


class _Gpu(_Model):
    allow_unchecked_revocation: bool = False
    allowed_revocation_reasons: list[str] = []
    allow_unknown_revocation: bool = False
    allowed_mismatch_indices: list[int] = []
    min_driver_version: str | None = None
    min_vbios_version: str | None = None
    claims: dict[str, Any] = {}
    overall_claims: dict[str, Any] = {}
    nvidia_policy: dict[str, Any] | str | None = None


class _Gpus(_Model):
    count: int | None = None
    min: int = 1
    distinct: bool = True


class _Ppcie(_Model):
    """Protected PCIe: NVSwitch rules, every GPU in PPCIe mode, and the topology."""

    gpus: int = 8
    switches: int = 4
    require_mode: bool = True
    require_topology: bool = True
    allow_unchecked_revocation: bool = False
    allowed_revocation_reasons: list[str] = []
    allow_unknown_revocation: bool = False
    allowed_mismatch_indices: list[int] = []


class _File(_Model):
    format: Literal["ccai-policy/1"]
    name: str | None = None
    description: str | None = None
    allow_simulated: bool = False
    unsafe_accept_anything: bool = False
    gpus: _Gpus = _Gpus()
    gpu: _Gpu | None = _Gpu()
    cpu: _Cpu | None = _Cpu()
    ppcie: _Ppcie | None = None


def _read(source: str | Path | bytes | Mapping[str, Any], name: str | None) -> tuple[Any, str, Path]:
    """The decoded document, a name for messages, and the directory relative paths start from."""
    if isinstance(source, str) and not source.lstrip().startswith("{"):
        source = Path(source)
    if isinstance(source, Path):
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read policy {source}: {exc.strerror}") from None
        name, base = name or str(source), source.parent
    elif isinstance(source, Mapping):
        # A plain-JSON copy of the caller's mapping, held to the same limits as a file.
        name = name or "(mapping)"
        try:
            data = json.dumps(source).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise UsageError(f"policy {name} is not plain JSON data: {str(exc)[:80]}") from None
        base = Path.cwd()
    else:
        data, name, base = (
            source.encode() if isinstance(source, str) else source,
            name or "(text)",
            Path.cwd(),
        )
    return load_json(data, what=f"policy {name}", error=UsageError), name, base


def _normalise(doc: Any, name: str) -> dict[str, Any]:
    """Map the NVIDIA and the older {"tdx", "snp"} layouts onto the ccai format."""
    if not isinstance(doc, dict):
        raise UsageError(f"policy {name} must be a JSON object")
    if "format" in doc:
        return doc
    if "authorization-rules" in doc:
        return {"format": POLICY_FORMAT, "gpu": {"nvidia_policy": doc}}
    if doc and set(doc) <= {"tdx", "snp"}:
        return {"format": POLICY_FORMAT, "cpu": doc}
    raise UsageError(
        f'policy {name} is not a ccai policy (no "format": "{POLICY_FORMAT}"), '
        'an NVIDIA authorization-rules file, or a {"tdx": …, "snp": …} object'
    )


def _validation_message(exc: ValidationError, name: str) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"policy {name}: unknown key {where!r}"
    if err["type"] == "missing":
        return f"policy {name}: missing key {where!r}"
    return f"policy {name}: {where}: {err['msg']}"


def _cpu_rules(cpu: _Cpu) -> ByTee:
    for tee in ("tdx", "snp"):
        if getattr(cpu, tee) is not None and tee not in cpu.tees:
            raise UsageError(f"cpu.{tee} is given, but {tee!r} is not in cpu.tees")
    tdx = cpu.tdx or _Tdx()
    snp = cpu.snp or _Snp()
    if snp.min_firmware is not None and len(snp.min_firmware) != 2:
        raise UsageError("cpu.snp.min_firmware must be [major, minor]")
    return ByTee(
        tdx=tdx_rules(**tdx.model_dump()) if "tdx" in cpu.tees else None,
        snp=snp_rules(
            **{
                **snp.model_dump(),
                "min_firmware": None
                if snp.min_firmware is None
                else (snp.min_firmware[0], snp.min_firmware[1]),
            }
        )
        if "snp" in cpu.tees
        else None,
    )


def _gpu_rules(gpu: _Gpu, base: Path, name: str) -> AllOf:
    rules: list[Policy] = [
        RevocationGood(
            allow_not_checked=gpu.allow_unchecked_revocation,
            allow_reasons=frozenset(gpu.allowed_revocation_reasons),
            allow_unknown=gpu.allow_unknown_revocation,
        ),
        MeasurementIndexAllowList(indices=frozenset(gpu.allowed_mismatch_indices)),
        CcModeOn(),
        DevToolsOff(),
    ]
    if gpu.min_driver_version is not None:
        rules.append(MinVersion(claim="x-nvidia-gpu-driver-version", minimum=gpu.min_driver_version))
    if gpu.min_vbios_version is not None:
        rules.append(
            MinVersion(claim="x-nvidia-gpu-vbios-version", minimum=gpu.min_vbios_version, hex_parts=True)
        )
    rules += [ClaimEquals(claim=k, value=v) for k, v in gpu.claims.items()]
    rules += [ClaimEquals(claim=k, value=v, scope="overall") for k, v in gpu.overall_claims.items()]
    if isinstance(gpu.nvidia_policy, str):
        path = Path(gpu.nvidia_policy)
        rules.append(load_nvidia_policy(path if path.is_absolute() else base / path))
    elif gpu.nvidia_policy is not None:
        rules.append(load_nvidia_policy(gpu.nvidia_policy, name=name))
    return AllOf(policies=tuple(rules))


def _gpu_count_rules(gpus: _Gpus, *, cpu_present: bool) -> list[Policy]:
    rules: list[Policy] = []
    if gpus.count == 0:
        rules.append(CpuOnly() if cpu_present else GpuCount(count=0))
    elif gpus.count is not None:
        rules.append(GpuCount(count=gpus.count))
    elif gpus.min:
        rules.append(MinGpus(minimum=gpus.min))
    if gpus.distinct and gpus.count != 0:
        rules.append(DistinctGpus())
    return rules


def _ppcie_rules(ppcie: _Ppcie, *, switches_only: bool) -> list[Policy]:
    if ppcie.gpus < 1 or ppcie.switches < 1:
        raise UsageError("ppcie.gpus and ppcie.switches must be at least 1")
    rules: list[Policy] = [
        SwitchesVerified(
            allow_not_checked=ppcie.allow_unchecked_revocation,
            allow_reasons=frozenset(ppcie.allowed_revocation_reasons),
            allow_unknown=ppcie.allow_unknown_revocation,
            allowed_mismatch_indices=frozenset(ppcie.allowed_mismatch_indices),
        )
    ]
    if not switches_only:
        if ppcie.require_mode:
            rules.append(PpcieMode())
        if ppcie.require_topology:
            rules.append(PpcieTopology(gpus=ppcie.gpus, switches=ppcie.switches))
    return rules


def _build(spec: _File, part: Part, base: Path, name: str) -> Policy:
    given = spec.model_fields_set
    if spec.unsafe_accept_anything:
        if given - {"format", "name", "description", "unsafe_accept_anything"}:
            raise UsageError("unsafe_accept_anything cannot be combined with rules")
        return UnsafeAcceptAnything()
    if spec.cpu is None and spec.gpu is None:
        raise UsageError(
            'the policy checks neither CPU nor GPU claims (say "unsafe_accept_anything" if meant)'
        )
    if (spec.gpus.count is not None and spec.gpus.count < 0) or spec.gpus.min < 0:
        raise UsageError("gpus.count and gpus.min must not be negative")
    rules: list[Policy] = [] if spec.allow_simulated else [NotSimulated()]
    if part == "switch":
        if spec.ppcie is None:
            raise UsageError('the policy has no NVSwitch rules (no "ppcie" section)')
        return AllOf(policies=(*rules, *_ppcie_rules(spec.ppcie, switches_only=True)))
    if part in ("all", "cpu"):
        if spec.cpu is not None:
            rules.append(_cpu_rules(spec.cpu))
        elif part == "cpu":
            raise UsageError('the policy has no CPU rules ("cpu": null)')
    if part in ("all", "gpu"):
        if part == "gpu" and spec.gpu is None:
            raise UsageError('the policy has no GPU rules ("gpu": null)')
        if part == "gpu" and spec.gpus.count == 0:
            raise UsageError("a CPU-only policy (gpus.count 0) cannot judge GPU evidence")
        rules += _gpu_count_rules(spec.gpus, cpu_present=spec.cpu is not None)
        if spec.gpu is not None:
            rules.append(_gpu_rules(spec.gpu, base, name))
        if spec.ppcie is not None:
            rules += _ppcie_rules(spec.ppcie, switches_only=False)
    return AllOf(policies=tuple(rules))


def load_policy(
    source: str | Path | bytes | Mapping[str, Any], *, part: Part = "all", name: str | None = None
) -> Policy:
    """Load a policy file into the one policy model.

    Args:
        source: A path (:class:`~pathlib.Path`, or a ``str`` that does not start with ``{``), JSON
            text/bytes, or the decoded object. A ccai policy (``"format": "ccai-policy/1"``), an
            NVIDIA ``authorization-rules`` file, or the older ``{"tdx": …, "snp": …}`` layout.
        part: ``"all"`` (composite evidence, and token claims), ``"cpu"`` (only the CPU rules, for
            standalone TDX/SNP verification), ``"gpu"`` (only the GPU rules, for GPU-only
            verification; with a ``ppcie`` section also the NVSwitch, PPCIe-mode and topology
            rules) or ``"switch"`` (only the NVSwitch rules of the ``ppcie`` section).
            Simulation is refused in every part unless the file allows it.
        name: What to call the policy in messages (default: the path, or ``(text)``).

    Returns:
        The policy. A policy that accepts anything is logged as a warning on the
        ``ccai.verify.policy`` logger.

    Raises:
        UsageError: unreadable file, not JSON, an unknown key, a wrong type or a bad value — the
            one-line message names the key.
    """
    doc, name, base = _read(source, name)
    doc = _normalise(doc, name)
    try:
        spec = _File.model_validate(doc)
    except ValidationError as exc:
        raise UsageError(_validation_message(exc, name)) from None
    try:
        policy = _build(spec, part, base, name)
    except UsageError as exc:
        if exc.message.startswith(f"policy {name}"):
            raise
        raise UsageError(f"policy {name}: {exc.message}") from None
    if accepts_anything(policy):
        logger.warning("policy %s accepts anything: claims will pass without any check", name)
    return policy

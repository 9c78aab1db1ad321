"""What the command modules share: Typer option aliases, argument parsers and collateral sources.

One definition per option keeps the same flag spelled, typed and explained the same way in every
command (``ccai verify gpu --offline`` and ``ccai attest gpu --offline`` mean the same thing), and
one parser per argument kind keeps its validation in one place (a nonce is 64 hex digits
everywhere). Heavy imports stay inside the functions.
"""

from __future__ import annotations

import os
import re
import string
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ccai._time import parse_instant, utcnow
from ccai.errors import UsageError

if TYPE_CHECKING:
    from ccai.collateral import CollateralSource, HttpLimits
    from ccai.verify import Policy, TrustAnchors

__all__ = [
    "AllowSimulatedOpt",
    "ApiKeyOpt",
    "AtOpt",
    "ClaimsVersionOpt",
    "GpuCollateralOpt",
    "GpuPolicyOpt",
    "JsonClaimsOpt",
    "JsonOpt",
    "KdsUrlOpt",
    "NonceOpt",
    "OcspUrlOpt",
    "OfflineOpt",
    "PcsUrlOpt",
    "RimDirOpt",
    "RimServiceUrlOpt",
    "ServiceUrlOpt",
    "check_claims_version",
    "collateral_http_limits",
    "gateway_trust",
    "gpu_collateral_source",
    "network_sources",
    "parse_nonce",
    "verification_time",
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
JsonClaimsOpt = Annotated[bool, typer.Option("--json", help="Print claims and the detached EAT as JSON.")]
AtOpt = Annotated[
    str | None, typer.Option("--at", help="Verification time, ISO 8601 (default: now).", metavar="ISO8601")
]
NonceOpt = Annotated[
    str | None,
    typer.Option("--nonce", help="The verifier nonce: 32 bytes as 64 hex digits.", metavar="HEX64"),
]
AllowSimulatedOpt = Annotated[
    bool,
    typer.Option("--allow-simulated", help="Trust the virtual TEE/GPU test PKIs under $CCAI_HOME."),
]
ClaimsVersionOpt = Annotated[str, typer.Option("--claims-version", help="3.0 or 2.0.")]
GpuPolicyOpt = Annotated[Path | None, typer.Option("--policy", help="NVIDIA JSON policy file.", metavar="F")]
RimDirOpt = Annotated[Path | None, typer.Option("--rim-dir", help="Directory of <id>.xml RIMs.", metavar="D")]
GpuCollateralOpt = Annotated[
    Path | None, typer.Option("--collateral", help="Offline collateral bundle.", metavar="BUNDLE")
]
OfflineOpt = Annotated[
    bool, typer.Option("--offline", help="No network. Without a bundle, revocation is 'not-checked'.")
]
PcsUrlOpt = Annotated[str | None, typer.Option("--pcs-url", help="Intel PCS / PCCS base URL.", metavar="URL")]
KdsUrlOpt = Annotated[str | None, typer.Option("--kds-url", help="AMD KDS base URL.", metavar="URL")]
RimServiceUrlOpt = Annotated[
    str | None, typer.Option("--rim-service-url", help="NVIDIA RIM service base URL.", metavar="URL")
]
ServiceUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--service",
        help="Attestation service base URL: verify there, check its token here.",
        metavar="URL",
    ),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="CCAI_API_KEY",
        show_envvar=True,
        help="API key of the --service (default $CCAI_API_KEY).",
        metavar="KEY",
    ),
]
OcspUrlOpt = Annotated[str | None, typer.Option("--ocsp-url", help="OCSP responder URL.", metavar="URL")]

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def parse_nonce(text: str) -> bytes:
    """Parse a ``--nonce``: exactly 32 bytes written as 64 hex digits.

    Args:
        text: The option value (surrounding white space is ignored).

    Returns:
        The 32 nonce bytes.

    Raises:
        UsageError: anything else (SPDM requests and evidence bundles carry exactly 32 bytes).
    """
    value = text.strip()
    if _HEX64.fullmatch(value):
        return bytes.fromhex(value)
    # Say what is wrong: the first character that is not a hex digit, else the length.
    bad = next((i for i, c in enumerate(value) if c not in string.hexdigits), None)
    if bad is not None:
        problem = f"non-hex character {value[bad]!r} at position {bad + 1}"
    else:
        problem = f"wrong length: got {len(value)} hex digits, need 64"
    raise UsageError(
        f"--nonce must be 32 bytes as 64 hex digits: {problem}",
        hint="e.g. --nonce $(openssl rand -hex 32)",
    )


def verification_time(at: str | None) -> datetime:
    """The time to verify at: ``--at`` parsed as ISO 8601, or now (captured once, here).

    Raises:
        UsageError: ``at`` is not an ISO 8601 time.
    """
    return parse_instant(at) if at else utcnow()


def check_claims_version(version: str) -> str:
    """Return ``version`` if it is a claims version ccai issues (``3.0`` or ``2.0``).

    Raises:
        UsageError: any other value.
    """
    if version not in ("3.0", "2.0"):
        raise UsageError("--claims-version must be 3.0 or 2.0", actual=version)
    return version


def collateral_http_limits() -> HttpLimits:
    """The size and time limits of collateral requests: defaults, or ``CCAI_COLLATERAL_MAX_BYTES``
    and ``CCAI_COLLATERAL_DEADLINE`` from the environment.

    Raises:
        UsageError: a variable holds no valid size or number of seconds.
    """
    from ccai.collateral import HttpLimits

    return HttpLimits.from_env(os.environ)


def gpu_collateral_source(
    *,
    collateral: Path | None,
    rim_dir: Path | None,
    offline: bool,
    rim_service_url: str | None = None,
    ocsp_url: str | None = None,
    first: CollateralSource | None = None,
    last: CollateralSource | None = None,
) -> tuple[CollateralSource, bool]:
    """The GPU collateral source the ``--collateral/--rim-dir/--offline/--…-url`` options describe.

    Args:
        collateral: An offline collateral bundle file.
        rim_dir: A directory of ``<id>.xml`` RIMs.
        offline: Never touch the network.
        rim_service_url: RIM service base URL (default NVIDIA's).
        ocsp_url: OCSP responder URL (default NVIDIA's).
        first: A source to ask before all others (RIM files named on the command line).
        last: A source to ask after all others (the virtual GPU's own RIMs).

    Returns:
        ``(source, check_revocation)``: offline without a bundle there is nowhere to get OCSP
        responses from, so revocation is reported "not checked" instead of failing.

    Raises:
        UsageError: the bundle file cannot be read.
        MalformedEvidence: the bundle is not a collateral bundle.
    """
    from ccai.collateral import (
        DEFAULT_OCSP_URL,
        DEFAULT_RIM_SERVICE_URL,
        SourceChain,
        default_gpu_source,
        read_bundle,
    )

    bundle = read_bundle(collateral) if collateral is not None else None
    chain = default_gpu_source(
        bundle=bundle,
        rim_dir=rim_dir,
        offline=offline,
        rim_service_url=rim_service_url or DEFAULT_RIM_SERVICE_URL,
        ocsp_url=ocsp_url or DEFAULT_OCSP_URL,
        limits=collateral_http_limits(),
    )
    sources = [s for s in (first, chain, last) if s is not None]
    source: CollateralSource = chain if len(sources) == 1 else SourceChain(sources)
    return source, not offline or bundle is not None


def network_sources(
    *,
    pcs_url: str | None = None,
    kds_url: str | None = None,
    rim_service_url: str | None = None,
    ocsp_url: str | None = None,
) -> dict[str, Any]:
    """The network collateral sources of a composite bundle, as keyword arguments of
    :func:`ccai.attest.gather_composite_collateral` (``gpu_source``, ``pcs``, ``kds``).

    Args:
        pcs_url: Intel PCS / PCCS base URL (default Intel's).
        kds_url: AMD KDS base URL (default AMD's).
        rim_service_url: NVIDIA RIM service base URL (default NVIDIA's).
        ocsp_url: OCSP responder URL (default NVIDIA's).

    Returns:
        ``{"gpu_source": …, "pcs": IntelPcsClient, "kds": AmdKdsClient}``.
    """
    from ccai.collateral import (
        AMD_KDS_URL,
        DEFAULT_OCSP_URL,
        DEFAULT_RIM_SERVICE_URL,
        INTEL_PCS_URL,
        AmdKdsClient,
        IntelPcsClient,
        default_gpu_source,
    )

    limits = collateral_http_limits()
    return {
        "gpu_source": default_gpu_source(
            rim_service_url=rim_service_url or DEFAULT_RIM_SERVICE_URL,
            ocsp_url=ocsp_url or DEFAULT_OCSP_URL,
            limits=limits,
        ),
        "pcs": IntelPcsClient(pcs_url or INTEL_PCS_URL, limits=limits),
        "kds": AmdKdsClient(kds_url or AMD_KDS_URL, limits=limits),
    }


def gateway_trust(
    policy: Path | None, *, allow_simulated: bool, home: Path | None
) -> tuple[TrustAnchors | None, Policy | None]:
    """What a confidential gateway's attestation is verified against (``ccai chat``, ``ccai bench serve``).

    Args:
        policy: A policy file the gateway's evidence must satisfy, if any.
        allow_simulated: Trust the virtual TDX guest's and virtual GPUs' test PKIs under ``home``
            instead of the pinned vendor roots.
        home: The virtual hardware's state directory (default ``$CCAI_HOME``).

    Returns:
        ``(anchors, policy)``; ``anchors`` is ``None`` for the pinned vendor roots.

    Raises:
        UsageError: the policy file is missing or unreadable.
        PolicyError: the policy file is malformed.
    """
    from ccai.cli._output import read_input

    rules = None
    if policy is not None:
        from ccai.verify import load_policy

        rules = load_policy(read_input(policy, what="policy"), name=str(policy))
    anchors = None
    if allow_simulated:
        from ccai.virtual import virtual_trust_anchors

        anchors = virtual_trust_anchors(home, gpu=True, tdx=True)
    return anchors, rules

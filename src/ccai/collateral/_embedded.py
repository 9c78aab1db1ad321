"""Collateral embedded in a composite evidence bundle (docs/composite-evidence.md).

The bundle format (:mod:`ccai.evidence`) keeps its ``collateral`` member opaque, because
``collateral`` imports ``evidence`` and never the other way round. This module reads and writes
that member as ccai's offline :class:`CollateralBundle`, whose ``cpu`` part holds one
:class:`TdxCollateral` (``{"tdx": …}``) or :class:`SnpCollateral` (``{"snp": …}``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ccai.collateral._amd import SnpCollateral, snp_collateral_from_json
from ccai.collateral._bundle import CollateralBundle, dump_bundle, load_bundle
from ccai.collateral._intel import TdxCollateral, tdx_collateral_from_json
from ccai.errors import MalformedEvidence
from ccai.evidence import EvidenceBundle

__all__ = [
    "cpu_collateral_from_bundle",
    "cpu_collateral_section",
    "embed_collateral",
    "load_embedded_collateral",
]


def embed_collateral(bundle: EvidenceBundle, collateral: CollateralBundle | None) -> EvidenceBundle:
    """``bundle`` carrying ``collateral`` for offline verification (``None`` removes it).

    Returns:
        A new bundle; ``bundle`` itself is unchanged.
    """
    data = dump_bundle(collateral) if collateral is not None else None
    return dataclasses.replace(bundle, collateral_json=data)


def load_embedded_collateral(bundle: EvidenceBundle) -> CollateralBundle | None:
    """The collateral a bundle carries, parsed (``None`` when it carries none).

    Raises:
        MalformedEvidence: the embedded collateral is malformed.
        UnsupportedEvidence: its version is not supported.
    """
    if bundle.collateral_json is None:
        return None
    return load_bundle(bundle.collateral_json)


def cpu_collateral_section(collateral: TdxCollateral | SnpCollateral) -> dict[str, Any]:
    """The ``cpu`` part of a collateral bundle for one CPU collateral object."""
    if isinstance(collateral, TdxCollateral):
        return {"tdx": collateral.to_json()}
    return {"snp": collateral.to_json()}


def cpu_collateral_from_bundle(
    bundle: CollateralBundle | None, cpu_type: str
) -> TdxCollateral | SnpCollateral | None:
    """The TDX or SNP collateral in ``bundle.cpu`` (``None`` when the bundle has none for ``cpu_type``).

    Raises:
        MalformedEvidence: the section is present but malformed.
    """
    if bundle is None:
        return None
    section = bundle.cpu.get(cpu_type)
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise MalformedEvidence(f"collateral bundle: cpu.{cpu_type} must be an object", step="parse")
    if cpu_type == "tdx":
        return tdx_collateral_from_json(section)
    return snp_collateral_from_json(section)

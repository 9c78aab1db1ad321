"""Regression: a non-ASCII GPU ``arch`` crashed composite verification after the CPU quote verified.

The binding hashes ``arch`` as ASCII; ``"HOPPER\u00e9"`` passed the parsers and raised
``UnicodeEncodeError`` in the binding step (exit 70). ``arch`` is now checked where the JSON is
parsed — NVIDIA's evidence JSON and the composite bundle — against the known architectures
(ASCII, any case) and refused as ``MalformedEvidence``.
"""

from __future__ import annotations

import base64
import json

import pytest

from ccai.errors import MalformedEvidence
from ccai.evidence import load_evidence_bundle, parse_evidence_json

_NONCE = "ab" * 32


def _item(arch: str) -> dict[str, str]:
    return {
        "arch": arch,
        "nonce": _NONCE,
        "evidence": base64.b64encode(b"report").decode(),
        "certificate": base64.b64encode(b"chain").decode(),
    }


HOSTILE = ["HOPPER\u00e9", "H\u00d6PPER", "L\u017f10", "\u0130", "GPU", "hopper ", "LS10\x00"]


@pytest.mark.parametrize("arch", HOSTILE)
def test_evidence_json_refuses_unknown_or_non_ascii_arch(arch: str) -> None:
    with pytest.raises(MalformedEvidence, match="'arch' is not a known architecture"):
        parse_evidence_json(json.dumps([_item(arch)]).encode())


@pytest.mark.parametrize("arch", HOSTILE)
def test_composite_bundle_refuses_unknown_or_non_ascii_arch(arch: str) -> None:
    bundle = {
        "format": "ccai-evidence-bundle",
        "version": 1,
        "binding": "ccai/composite/v1",
        "nonce": _NONCE,
        "gpus": [_item(arch)],
        "cpu": None,
        "keys": {},
    }
    with pytest.raises(MalformedEvidence, match="'arch' is not a known architecture"):
        load_evidence_bundle(json.dumps(bundle, ensure_ascii=False).encode())


@pytest.mark.parametrize("arch", ["HOPPER", "BLACKWELL", "LS10", "Blackwell", "hopper"])
def test_known_arches_in_any_ascii_case_are_kept_as_written(arch: str) -> None:
    (item,) = parse_evidence_json(json.dumps([_item(arch)]).encode())
    assert item.arch == arch

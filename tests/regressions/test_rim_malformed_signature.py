"""Regression: a RIM whose XML signature is malformed escaped as a raw signxml/lxml exception.

Removing ``ds:SignatureMethod`` (or another required XMLDSig element) made signxml's schema check
raise ``lxml.etree.DocumentInvalid``; other shapes give ``C14NError``, ``TypeError`` or
``InvalidInput``. The CLI answered exit 70. Every such RIM must now fail as ``SignatureError`` at the
RIM-authentication step, and an oversized integer attribute as ``MalformedEvidence``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccai.errors import MalformedEvidence, SignatureError
from ccai.evidence import parse_rim
from ccai.verify import nvidia_gpu_anchors
from ccai.verify._rim_check import check_rim

UT = "nvtrust/NVIDIA_attestation-sdk@73c032e/nv-attestation-sdk-cpp/unit-tests/testdata"
PIN_2025 = datetime(2025, 6, 1, tzinfo=UTC)


def _element(name: str) -> re.Pattern[bytes]:
    return re.compile(rb"<ds:%s\b[^>]*?(/>|>.*?</ds:%s>)" % (name.encode(), name.encode()), re.DOTALL)


@pytest.fixture
def rim(vectors: Path) -> bytes:
    return (vectors / UT / "NV_GPU_DRIVER_GH100_550.144.03.xml").read_bytes()


def _check(xml: bytes) -> None:
    check_rim(
        "NV_GPU_DRIVER_GH100_550.144.03",
        xml,
        anchors=[nvidia_gpu_anchors()],
        now=PIN_2025,
        step="(7) RIM authentication",
        what="driver RIM",
    )


def test_the_genuine_rim_verifies(rim: bytes) -> None:
    _check(rim)


@pytest.mark.parametrize(
    "element", ["SignatureMethod", "CanonicalizationMethod", "DigestMethod", "SignatureValue", "Transforms"]
)
def test_rim_without_a_required_xmldsig_element(rim: bytes, element: str) -> None:
    hostile, count = _element(element).subn(b"", rim, count=1)
    assert count == 1
    with pytest.raises(SignatureError) as info:
        _check(hostile)
    assert info.value.step == "(7) RIM authentication"


def test_rim_with_an_unknown_signature_algorithm(rim: bytes) -> None:
    hostile = re.sub(rb'(<ds:SignatureMethod Algorithm=")[^"]*', rb"\1urn:unknown", rim, count=1)
    assert hostile != rim
    with pytest.raises(SignatureError):
        _check(hostile)


def test_rim_integer_attribute_beyond_int_conversion_limit(rim: bytes) -> None:
    hostile = re.sub(rb'index="0"', b'index="' + b"9" * 5000 + b'"', rim, count=1)
    assert hostile != rim
    with pytest.raises(MalformedEvidence, match="is not a non-negative integer"):
        parse_rim(hostile)

"""``ccai verify gpu`` on byte-flipped copies of NVIDIA's real H100 report: every region of the signed
bytes fails at "(2) report signature" with exit 1 — the command parses nothing before the verifier
has checked the signature, and it asks for no collateral for such a report."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ccai.cli.app import app
from ccai.evidence import load_report

NVT0 = "nvtrust/NVIDIA_nvtrust@0ab869a/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples"
NONCE = "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e"
SIGNATURE_SIZE = 96
REQUEST_SIZE = 37

runner = CliRunner()


def _boundaries(raw: bytes) -> set[int]:
    """Structural boundaries of the signed region: request, response header, the first, a middle and
    the last measurement blocks, nonce, opaque length and each opaque TLV (with their neighbours).
    The library test (tests/verify/test_verifier.py) covers every block and every 7th byte."""
    signed_end = len(raw) - SIGNATURE_SIZE
    points = {0, 1, 2, REQUEST_SIZE - 1, *range(REQUEST_SIZE, REQUEST_SIZE + 8)}
    record_start = REQUEST_SIZE + 8
    record_end = record_start + int.from_bytes(raw[REQUEST_SIZE + 5 : REQUEST_SIZE + 8], "little")
    blocks = []
    i = record_start
    while i < record_end:
        blocks.append(i)
        i += 4 + int.from_bytes(raw[i + 2 : i + 4], "little")
    for i in (blocks[0], blocks[1], blocks[len(blocks) // 2], blocks[-1]):
        points.update({i, i + 2, i + 4, i + 7})
    points.update({record_end, record_end + 31, record_end + 32, record_end + 33})
    i = record_end + 34
    while i < signed_end:
        points.update({i, i + 2, i + 4})
        i += 4 + int.from_bytes(raw[i + 2 : i + 4], "little")
    points.add(signed_end - 1)
    return {p + d for p in points for d in (-1, 0) if 0 <= p + d < signed_end}


def test_flipped_bytes_in_every_signed_region_exit_1_at_the_signature_step(
    vectors: Path, tmp_path: Path
) -> None:
    raw = load_report((vectors / NVT0 / "attestationReport.txt").read_bytes())
    signed_end = len(raw) - SIGNATURE_SIZE
    offsets = sorted(_boundaries(raw) | set(range(0, signed_end, 97)))
    report = tmp_path / "report.hex"
    base = [
        "verify",
        "gpu",
        "--report",
        str(report),
        "--certs",
        str(vectors / NVT0 / "gpuAkCertChain.txt"),
        "--nonce",
        NONCE,
        "--offline",
        "--at",
        "2024-06-01T00:00:00Z",
        "--json",
    ]
    for offset in offsets:
        mutated = bytearray(raw)
        mutated[offset] ^= 0x01
        # Hex text, as NVIDIA's samples are: a flipped first byte must not change how the file loads.
        report.write_text(bytes(mutated).hex())
        result = runner.invoke(app, base)
        assert result.exit_code == 1, (offset, result.output)
        doc = json.loads(result.stdout)
        assert doc["error"]["class"] == "SignatureError", offset
        assert doc["error"]["step"] == "(2) report signature", offset
        assert [s["status"] for s in doc["steps"]][:3] == ["ok", "failed", "not run"], offset

"""Regression: deeply nested JSON raised ``RecursionError`` (CLI exit 70, "internal error").

``json.loads`` recurses once per nesting level, so a 100 000-deep ``[[[…]]]`` or
``{"a":{"a":…}}`` escaped most JSON entry points as ``RecursionError``. Every entry point now
reads through :func:`ccai._json.load_json` and raises the error class of its context: evidence
→ ``MalformedEvidence``, broken collateral answers → ``CollateralUnavailable``, sealed header and
manifest → the opaque ``UnsealError``, local files (policy, KEK, virtual-hardware state) →
``UsageError``, tokens → ``TokenError``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from ccai.cli._errors import ExitCode, exit_code_for
from ccai.cli.app import app
from ccai.cli.verify_cpu import read_evidence_bytes
from ccai.collateral import (
    CollateralCache,
    IntelPcsClient,
    RimServiceClient,
    load_bundle,
    read_bundle,
    tdx_collateral_from_json,
)
from ccai.collateral._intel import raw_json_member
from ccai.errors import (
    CollateralUnavailable,
    Error,
    MalformedEvidence,
    TokenError,
    UnsealError,
    UsageError,
)
from ccai.evidence import (
    EvidenceBundle,
    bundle_from_nonce_only_pair,
    dump_evidence_bundle,
    load_evidence_bundle,
    parse_evidence_json,
    parse_json_event_log,
)
from ccai.sealed import Header, Manifest, read_header, read_kek
from ccai.sealed._format import HEADER_NAME, parse_safetensors_header
from ccai.token import verify_token
from ccai.verify import load_nvidia_policy, load_policy
from ccai.virtual import VirtualCpuTee, VirtualGpuBackend
from ccai.virtual._common import read_cache

DEPTH = 100_000
NOW = datetime(2025, 1, 1, tzinfo=UTC)
NONCE = "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e"

SHAPES = [
    pytest.param(b"[" * DEPTH + b"]" * DEPTH, id="array"),
    pytest.param(b'{"a":' * DEPTH + b"1" + b"}" * DEPTH, id="object"),
]

runner = CliRunner()


def _header() -> Header:
    return Header(
        model_id=bytes(16),
        chunk_size=1 << 20,
        kid="k",
        wrap_nonce=bytes(12),
        wrapped_key=bytes(48),
        manifest_nonce=bytes(12),
    )


def _file(tmp_path: Path, data: bytes, name: str = "deep.json") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _http(body: bytes) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200, content=body)))


def _sealed_dir(tmp_path: Path, header: bytes) -> Path:
    sealed = tmp_path / "sealed"
    sealed.mkdir()
    (sealed / HEADER_NAME).write_bytes(header)
    return sealed


def _virtual_state(name: str, open_state: Callable[[], object]) -> Callable[[bytes, Path], object]:
    def call(data: bytes, tmp_path: Path) -> object:
        home = Path(__import__("os").environ["CCAI_HOME"])
        (home / name).write_bytes(data)
        return open_state()

    return call


def _as_object(data: bytes) -> bytes:
    """``data`` as the value of a member, for readers that sniff a leading ``{``."""
    return data if data.startswith(b"{") else b'{"quote":' + data + b"}"


def _safetensors(data: bytes) -> bytes:
    return len(data).to_bytes(8, "little") + data


# (id, call(data, tmp_path), the error it must raise)
ENTRY_POINTS: list[tuple[str, Callable[[bytes, Path], object], type[Error]]] = [
    # evidence
    ("parse_evidence_json", lambda d, _: parse_evidence_json(d), MalformedEvidence),
    ("load_evidence_bundle", lambda d, _: load_evidence_bundle(d), MalformedEvidence),
    ("nonce_only_pair", lambda d, _: bundle_from_nonce_only_pair(b"quote", d), MalformedEvidence),
    (
        "dump_evidence_bundle.collateral_json",
        lambda d, _: dump_evidence_bundle(
            EvidenceBundle(nonce=bytes(32), binding="x", gpus=(), cpu=None, collateral_json=d)
        ),
        UsageError,
    ),
    ("tdx_json_event_log.bytes", lambda d, _: parse_json_event_log(d), MalformedEvidence),
    ("tdx_json_event_log.str", lambda d, _: parse_json_event_log(d.decode()), MalformedEvidence),
    # collateral
    ("load_bundle", lambda d, _: load_bundle(d), MalformedEvidence),
    ("read_bundle", lambda d, p: read_bundle(_file(p, d)), MalformedEvidence),
    ("tdx_collateral_from_json", lambda d, _: tdx_collateral_from_json(d), MalformedEvidence),
    (
        "tdx_collateral.pcs_body",
        lambda d, _: tdx_collateral_from_json({"tcb_info": d.decode(), "qe_identity": "{}"}),
        MalformedEvidence,
    ),
    ("raw_json_member", lambda d, _: raw_json_member(d.decode(), "tcbInfo"), MalformedEvidence),
    (
        "intel_pcs.tcb_info",
        lambda d, _: IntelPcsClient("https://pcs.test", client=_http(d)).tdx_tcb_info(bytes(6)),
        CollateralUnavailable,
    ),
    (
        "intel_pcs.qe_identity",
        lambda d, _: IntelPcsClient("https://pcs.test", client=_http(d)).tdx_qe_identity(),
        CollateralUnavailable,
    ),
    (
        "rim_service.rim",
        lambda d, _: RimServiceClient("https://rim.test", client=_http(d)).rim("NV_RIM"),
        CollateralUnavailable,
    ),
    (
        "rim_service.ids",
        lambda d, _: RimServiceClient("https://rim.test", client=_http(d)).ids(),
        CollateralUnavailable,
    ),
    # sealed models
    ("Header.from_json", lambda d, _: Header.from_json(d), UnsealError),
    ("read_header", lambda d, p: read_header(_sealed_dir(p, d)), UnsealError),
    ("Manifest.from_json", lambda d, _: Manifest.from_json(d, header=_header()), UnsealError),
    ("read_kek", lambda d, p: read_kek(_file(p, d)), UsageError),
    (
        "safetensors_header",
        lambda d, _: parse_safetensors_header(_safetensors(d), file_size=1 << 30, what="x"),
        MalformedEvidence,
    ),
    # policies
    ("load_policy.path", lambda d, p: load_policy(_file(p, d)), UsageError),
    ("load_policy.bytes", lambda d, _: load_policy(d), UsageError),
    ("load_policy.text", lambda d, _: load_policy(_as_object(d).decode()), UsageError),
    ("load_policy.mapping", lambda d, _: load_policy(_deep_dict(d)), UsageError),
    ("load_nvidia_policy.path", lambda d, p: load_nvidia_policy(_file(p, d)), UsageError),
    ("load_nvidia_policy.bytes", lambda d, _: load_nvidia_policy(d), UsageError),
    # virtual hardware state
    ("virtual_gpu_state", _virtual_state("virtual-gpu.json", VirtualGpuBackend.open), UsageError),
    ("virtual_tee_state", _virtual_state("virtual-tee.json", VirtualCpuTee.open), UsageError),
    # tokens
    (
        "verify_token.eat",
        lambda d, _: verify_token(d, jwks={"keys": []}, nonce=bytes(32), now=NOW),
        TokenError,
    ),
    (
        "verify_token.jwks",
        lambda d, _: verify_token("[]", jwks=d, nonce=bytes(32), now=NOW),
        TokenError,
    ),
    # CLI input readers
    ("cli.read_evidence_bytes", lambda d, _: read_evidence_bytes(_as_object(d), what="quote"), UsageError),
]


def _deep_dict(data: bytes) -> dict[str, Any]:
    """A Python mapping as deep as ``data`` (built without recursion)."""
    inner: Any = [] if data.startswith(b"[") else 1
    for _ in range(DEPTH):
        inner = {"a": inner}
    return {"format": "ccai-policy/1", "gpu": inner}


@pytest.mark.parametrize("data", SHAPES)
@pytest.mark.parametrize(("call", "error"), [pytest.param(c, e, id=name) for name, c, e in ENTRY_POINTS])
def test_deep_json_raises_a_typed_error(
    call: Callable[[bytes, Path], object], error: type[Error], data: bytes, tmp_path: Path
) -> None:
    with pytest.raises(error) as info:
        call(data, tmp_path)
    assert type(info.value) is error
    assert "\n" not in info.value.message


@pytest.mark.parametrize("data", SHAPES)
def test_deep_cache_records_are_misses(data: bytes, tmp_path: Path) -> None:
    cache = CollateralCache(tmp_path)
    cache.put_rim("NV_RIM", b"<xml/>", now=NOW)
    (record,) = tmp_path.glob("rim-*.json")
    record.write_bytes(data)
    assert CollateralCache(tmp_path).get_rim("NV_RIM", now=NOW) is None
    assert not record.exists()  # a corrupt entry is removed


@pytest.mark.parametrize("data", SHAPES)
def test_deep_test_pki_cache_is_ignored(data: bytes, tmp_path: Path) -> None:
    assert read_cache(_file(tmp_path, data), cache_format="x", seed_id="y") is None


# -- the command line --------------------------------------------------------------------------


def _cli(*args: str | Path) -> tuple[int, Error | None]:
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return int(exit_code_for(result.exception)), (
            result.exception if isinstance(result.exception, Error) else None
        )
    return result.exit_code, None


def _simulated_bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle.json"
    code, _ = _cli("attest", "--simulate", "tdx", "--gpus", "0", "--nonce", NONCE, "-o", bundle)
    assert code == 0
    return bundle


CLI_CASES: list[tuple[str, Callable[[Path, Path], list[str | Path]], ExitCode]] = [
    ("evidence inspect", lambda deep, _: ["evidence", "inspect", deep], ExitCode.FAILED),
    (
        "verify gpu EVIDENCE",
        lambda deep, _: ["verify", "gpu", deep, "--nonce", NONCE, "--offline"],
        ExitCode.FAILED,
    ),
    ("verify BUNDLE", lambda deep, _: ["verify", deep, "--offline", "--nonce", NONCE], ExitCode.FAILED),
    ("collateral inspect", lambda deep, _: ["collateral", "inspect", deep], ExitCode.FAILED),
    ("sealed inspect", lambda deep, _: ["sealed", "inspect", deep.parent / "sealed"], ExitCode.FAILED),
    (
        "sealed inspect --kek",
        lambda deep, tmp: ["sealed", "inspect", tmp / "good-sealed", "--kek", deep],
        ExitCode.USAGE,
    ),
    (
        "sealed rewrap",
        lambda deep, tmp: ["sealed", "rewrap", tmp / "good-sealed", "--kek", deep, "--new-kek", deep],
        ExitCode.USAGE,
    ),
    ("verify tdx QUOTE", lambda deep, tmp: ["verify", "tdx", tmp / "quote.json"], ExitCode.USAGE),
    (
        "verify tdx --policy",
        lambda deep, tmp: ["verify", "tdx", tmp / "quote", "--policy", deep],
        ExitCode.USAGE,
    ),
    (
        "verify tdx --collateral",
        lambda deep, tmp: ["verify", "tdx", tmp / "quote", "--collateral", deep],
        ExitCode.FAILED,
    ),
    (
        "verify tdx --event-log",
        lambda deep, tmp: ["verify", "tdx", tmp / "quote", "--event-log", deep],
        ExitCode.FAILED,
    ),
    (
        "verify snp --policy",
        lambda deep, tmp: ["verify", "snp", tmp / "quote", "--policy", deep],
        ExitCode.USAGE,
    ),
]


@pytest.mark.parametrize("data", SHAPES)
@pytest.mark.parametrize(("args", "code"), [pytest.param(a, c, id=n) for n, a, c in CLI_CASES])
def test_cli_deep_json_is_a_typed_one_line_error(
    args: Callable[[Path, Path], list[str | Path]], code: ExitCode, data: bytes, tmp_path: Path
) -> None:
    deep = _file(tmp_path, data)
    _sealed_dir(tmp_path, data)
    (tmp_path / "good-sealed").mkdir()
    (tmp_path / "good-sealed" / HEADER_NAME).write_bytes(_header().to_json())
    (tmp_path / "quote").write_bytes(b"\x00" * 64)
    (tmp_path / "quote.json").write_bytes(_as_object(data))
    got, error = _cli(*args(deep, tmp_path))
    assert got == code
    assert error is not None and "\n" not in error.message


@pytest.mark.parametrize("data", SHAPES)
def test_cli_verify_gpu_deep_policy_is_a_usage_error(data: bytes, tmp_path: Path, vectors: Path) -> None:
    samples = "guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples"
    old, new = (
        vectors / "nvtrust/NVIDIA_nvtrust@0ab869a" / samples,
        vectors / "nvtrust/NVIDIA_nvtrust@0281730" / samples,
    )
    args: list[str | Path] = ["verify", "gpu", "--report", old / "attestationReport.txt"]
    args += [
        "--certs",
        old / "gpuAkCertChain.txt",
        "--nonce",
        NONCE,
        "--offline",
        "--at",
        "2024-06-01T00:00:00Z",
    ]
    args += ["--driver-rim", new / "Driver_RIM_test_no_gpu.swidtag"]
    args += ["--vbios-rim", new / "1010_0200_882_96005E0001_test_no_gpu.swidtag"]
    got, error = _cli(*args, "--policy", _file(tmp_path, data))
    assert got == ExitCode.USAGE
    assert isinstance(error, UsageError) and "\n" not in error.message


@pytest.mark.parametrize("data", SHAPES)
def test_cli_verify_bundle_deep_collateral_and_policy(data: bytes, tmp_path: Path) -> None:
    bundle = _simulated_bundle(tmp_path)
    deep = _file(tmp_path, data)
    base = ["verify", bundle, "--offline", "--allow-simulated", "--nonce", NONCE]
    got, error = _cli(*base, "--collateral", deep)
    assert got == ExitCode.FAILED and isinstance(error, MalformedEvidence)
    got, error = _cli(*base, "--policy", deep)
    assert got == ExitCode.USAGE and isinstance(error, UsageError)

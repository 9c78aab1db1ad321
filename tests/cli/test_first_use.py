"""Regressions: what a first-time user of each command ran into (exit codes, messages, lost files).

Each test names the defect it pins. They run the real Typer app (``CliRunner``) or the real entry
point (:func:`ccai.cli.__main__.main`, for exit codes and the one-line messages on stderr).
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ccai.cli.__main__ import main
from ccai.cli.app import app
from ccai.virtual import VirtualGpuBackend

NONCE = "5a" * 32
runner = CliRunner()


def _main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Run ``ccai ARGS`` through the entry point: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["ccai", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


# -- (1) composite verification requires the nonce -------------------------------------------------


@pytest.fixture
def composite_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    pytest.importorskip("uvicorn", reason="--with-collateral runs the dev collateral server: ccai[service]")
    bundle = tmp_path / "b.json"
    code, _, err = _main(
        monkeypatch,
        capsys,
        *("attest", "--simulate", "tdx", "--nonce", NONCE, "-o", str(bundle), "--with-collateral"),
    )
    assert code == 0, err
    return bundle


def test_verify_bundle_without_nonce_is_a_usage_error(
    composite_bundle: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Regression: without --nonce a replayed bundle passed with exit 0 and no warning.
    base = ("verify", str(composite_bundle), "--offline", "--allow-simulated")
    code, out, err = _main(monkeypatch, capsys, *base)
    assert code == 2 and out == ""
    assert "--nonce is required: the nonce you issued" in err
    code, _, err = _main(monkeypatch, capsys, *base, "--nonce", NONCE, "--skip-freshness-check")
    assert code == 2 and "not both" in err
    code, out, _ = _main(monkeypatch, capsys, *base, "--nonce", NONCE, "--json")
    assert code == 0 and json.loads(out)["freshness"] == "checked"


def test_verify_bundle_skip_freshness_check_says_so(
    composite_bundle: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ("verify", str(composite_bundle), "--offline", "--allow-simulated", "--skip-freshness-check")
    code, out, err = _main(monkeypatch, capsys, *base)
    assert code == 0, err  # the user asked for exactly this check to be left out
    assert "warning: freshness NOT checked" in err
    assert "PASS (freshness NOT checked)" in out
    code, out, _ = _main(monkeypatch, capsys, *base, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["result"] == "pass" and doc["freshness"] == "not checked"
    assert doc["claims"]["overall"]["x-ccai-freshness"] == "not-checked"


# -- (2) verify gpu: a pass without revocation says so ----------------------------------------------


def _virtual_evidence(tmp_path: Path) -> tuple[Path, Path, VirtualGpuBackend]:
    from ccai.attest import collect_gpu_evidence
    from ccai.evidence import dump_evidence_json

    backend = VirtualGpuBackend.create(gpus=1)
    path = tmp_path / "evidence.json"
    path.write_bytes(dump_evidence_json(collect_gpu_evidence(backend, bytes.fromhex(NONCE))))
    rim_dir = tmp_path / "rims"
    rim_dir.mkdir()
    for rim_id in backend.rim_ids(0):
        (rim_dir / f"{rim_id}.xml").write_bytes(backend.rim(rim_id))
    return path, rim_dir, backend


def test_verify_gpu_offline_pass_says_revocation_not_checked(tmp_path: Path) -> None:
    # Regression: PASS was printed while x-nvidia-overall-att-result was false, without saying why.
    path, rim_dir, _ = _virtual_evidence(tmp_path)
    base = [
        "verify",
        "gpu",
        str(path),
        "--nonce",
        NONCE,
        "--rim-dir",
        str(rim_dir),
        "--offline",
        "--allow-simulated",
    ]
    result = runner.invoke(app, base)
    assert result.exit_code == 0, result.output
    assert (
        "PASS (revocation NOT checked: offline without OCSP responses; x-nvidia-overall-att-result: false)"
        in result.stdout
    )
    result = runner.invoke(app, [*base, "--json"])
    doc = json.loads(result.stdout)
    assert doc["result"] == "pass" and doc["revocation"] == "not-checked"
    assert doc["claims"]["overall"]["x-nvidia-overall-att-result"] is False
    assert doc["warnings"][0].startswith("revocation NOT checked")


# -- (3) verify gpu takes the service URLs -----------------------------------------------------------


@pytest.mark.extra("service")
def test_verify_gpu_asks_the_given_rim_service_and_ocsp_responder(tmp_path: Path) -> None:
    from ccai.virtual import create_dev_collateral_app, run_in_background, settings_for_virtual_gpu

    path, _, backend = _virtual_evidence(tmp_path)
    base = ["verify", "gpu", str(path), "--nonce", NONCE, "--allow-simulated", "--json"]
    with run_in_background(create_dev_collateral_app(settings_for_virtual_gpu(backend))) as url:
        result = runner.invoke(app, [*base, "--rim-service-url", url, "--ocsp-url", f"{url}/ocsp"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["revocation"] == "checked" and doc["warnings"] == []
    assert doc["claims"]["overall"]["x-nvidia-overall-att-result"] is True


def test_verify_gpu_offline_with_service_urls_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _, _ = _virtual_evidence(tmp_path)
    code, _, err = _main(
        monkeypatch,
        capsys,
        *(
            "verify",
            "gpu",
            str(path),
            "--nonce",
            NONCE,
            "--offline",
            "--rim-service-url",
            "http://127.0.0.1:1",
        ),
    )
    assert code == 2 and "--offline" in err


# -- (4) --simulate uses the existing virtual hardware as it is --------------------------------------


def test_simulate_never_replaces_existing_virtual_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Regression: `ccai attest --simulate tdx` silently turned 2 Blackwell GPUs into 1 Hopper, and
    # evidence collected before stopped verifying.
    def state() -> tuple[int, str, bytes]:
        backend = VirtualGpuBackend.open()
        return backend.gpu_count, backend.model.architecture.value, backend.seed

    code, _, err = _main(
        monkeypatch, capsys, "gpu", "init", "--simulate", "--gpus", "2", "--arch", "blackwell"
    )
    assert code == 0, err
    before = state()
    earlier = tmp_path / "earlier.json"
    assert (
        _main(monkeypatch, capsys, "gpu", "evidence", "--simulate", "--nonce", NONCE, "-o", str(earlier))[0]
        == 0
    )

    bundle = tmp_path / "b.json"
    for flavour in ("tdx", "snp"):
        code, out, err = _main(
            monkeypatch,
            capsys,
            "attest",
            "--simulate",
            flavour,
            "--nonce",
            NONCE,
            "-o",
            str(bundle),
            "--json",
        )
        assert code == 0, err
        assert json.loads(out)["gpus"] == 2 and state() == before
    code, _, err = _main(
        monkeypatch, capsys, "attest", "--simulate", "tdx", "--gpus", "2", "--nonce", NONCE, "-o", str(bundle)
    )
    assert code == 0, err

    code, out, err = _main(
        monkeypatch, capsys, "attest", "--simulate", "tdx", "--gpus", "1", "--nonce", NONCE, "-o", str(bundle)
    )
    assert code == 2 and out == ""
    assert "2 virtual blackwell GPU(s), not 1" in err and "`ccai gpu init --simulate --gpus 1`" in err
    code, _, err = _main(
        monkeypatch,
        capsys,
        "attest",
        "--simulate",
        "tdx",
        "--seed",
        "another",
        "--nonce",
        NONCE,
        "-o",
        str(bundle),
    )
    assert code == 2 and "another test-PKI seed" in err
    assert state() == before

    assert _main(monkeypatch, capsys, "attest", "gpu", "--simulate", "--json")[0] == 0
    again = tmp_path / "again.json"
    assert (
        _main(monkeypatch, capsys, "gpu", "evidence", "--simulate", "--nonce", NONCE, "-o", str(again))[0]
        == 0
    )
    assert state() == before

    # The evidence collected first still verifies against the (unchanged) test PKI.
    rim_dir = tmp_path / "rims"
    rim_dir.mkdir()
    backend = VirtualGpuBackend.open()
    for rim_id in backend.rim_ids(0):
        (rim_dir / f"{rim_id}.xml").write_bytes(backend.rim(rim_id))
    code, _, err = _main(
        monkeypatch,
        capsys,
        *(
            "verify",
            "gpu",
            str(earlier),
            "--nonce",
            NONCE,
            "--rim-dir",
            str(rim_dir),
            "--offline",
            "--allow-simulated",
        ),
    )
    assert code == 0, err


# -- (5) bench load without CUDA ----------------------------------------------------------------------


@pytest.mark.torch
def test_bench_load_without_cuda_is_hardware_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Regression: exit 70 (internal error) with "AssertionError: Torch not compiled with CUDA enabled".
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, out, err = _main(monkeypatch, capsys, "bench", "load", "--size", "0.001", "--repeats", "1")
    assert code == 4 and out == ""
    assert "CUDA is not available" in err and "--device cpu" in err and "internal error" not in err
    code, _, err = _main(monkeypatch, capsys, "bench", "load", "--size", "0.001", "--device", "tpu")
    assert code == 2 and "use cuda, cuda:N or cpu" in err


# -- (6) a busy port is a usage error -----------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.extra("service")
@pytest.mark.parametrize(
    "command",
    [
        ["dev", "collateral-server"],
        ["dev", "buffering-proxy", "--upstream", "http://127.0.0.1:9"],
        ["dev", "engine"],
    ],
)
def test_a_busy_port_is_a_usage_error(
    command: list[str], busy_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Regression: exit 3 ("collateral unavailable") from uvicorn, after the URLs were printed.
    code, out, err = _main(monkeypatch, capsys, *command, "--port", str(busy_port), "--json")
    message = f"cannot listen on 127.0.0.1:{busy_port}: address already in use"
    assert code == 2 and message in err
    # No URL was printed before the failure: stdout is the one --json error document.
    doc = json.loads(out)
    assert (
        doc["result"] == "error"
        and doc["error"]["class"] == "UsageError"
        and doc["error"]["message"] == message
    )


# -- (11) dev engine --json: stdout is the JSON document only -----------------------------------------

_FAKE_ENGINE = """
import http.server, sys, threading
print("INFO:     a log line of the engine", flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a):
        print("INFO:     request", flush=True)
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
threading.Timer(1.5, server.shutdown).start()
server.serve_forever()
"""


def test_dev_engine_json_stdout_is_only_json(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Regression: the engine's log lines went to stdout, ahead of the JSON document.
    import ccai.openai_protocol as protocol
    from ccai.openai_protocol import EngineCommand

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = tmp_path / "fake_engine.py"
    script.write_text(_FAKE_ENGINE)

    def fake_command(path: Path, **kwargs: object) -> EngineCommand:
        del path, kwargs
        argv = (sys.executable, str(script), str(port))
        return EngineCommand(argv=argv, env={}, url=f"http://127.0.0.1:{port}", model="fake", settings={})

    monkeypatch.setattr(protocol, "engine_command", fake_command)
    monkeypatch.setattr(sys, "argv", ["ccai", "dev", "engine", str(tmp_path), "--port", str(port), "--json"])
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capfd.readouterr()
    assert info.value.code in (0, None), err
    assert json.loads(out)["model"] == "fake"  # the whole of stdout is one JSON document
    assert "a log line of the engine" in err


# -- (8) a bad nonce says what is wrong --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("zz" + "00" * 31, "non-hex character 'z' at position 1"),
        ("00" * 31 + "0g", "non-hex character 'g' at position 64"),
        ("00" * 16 + " " + "00" * 16, "non-hex character ' ' at position 33"),
        ("0x" + "00" * 32, "non-hex character 'x' at position 2"),
        ("ab" * 31, "wrong length: got 62 hex digits, need 64"),
        ("ab" * 33, "wrong length: got 66 hex digits, need 64"),
        ("", "wrong length: got 0 hex digits, need 64"),
    ],
)
def test_a_bad_nonce_says_what_is_wrong(text: str, problem: str) -> None:
    # Regression: a 64-character nonce with a non-hex digit was reported as "got 64 characters".
    from ccai.cli._options import parse_nonce
    from ccai.errors import UsageError

    with pytest.raises(UsageError) as info:
        parse_nonce(text)
    assert info.value.message == f"--nonce must be 32 bytes as 64 hex digits: {problem}"
    assert parse_nonce(f"  {'AB' * 32}\n") == b"\xab" * 32

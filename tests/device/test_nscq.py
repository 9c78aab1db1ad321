"""NVSwitch collection through NSCQ, against an ABI-compatible test library.

``fake_nscq.c`` exports the NSCQ 2.x attestation symbols with NVIDIA's C signatures (session
create/destroy, path observers whose callbacks receive the report and chain structs by value,
``nscq_session_set_input`` for the nonce, ``nscq_uuid_to_label``) and answers from files the tests
write: the virtual HGX's LS10 reports (signed by the test PKI) for the nonces a test will ask for,
and its chains. ccai loads it through ``$CCAI_NSCQ_LIBRARY`` exactly as it loads
``libnvidia-nscq.so.2`` on an HGX system.
"""

from __future__ import annotations

import ctypes.util
import json
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ccai.attest import (
    NSCQ_LIBRARY_ENV,
    NscqSwitches,
    collect_composite,
    collect_switch_evidence,
    nscq_switches,
)
from ccai.cli.__main__ import main
from ccai.device import MultiGpuMode
from ccai.errors import DeviceError, DeviceNotSupported, DriverNotFound
from ccai.evidence import composite_report_data, derive_gpu_nonce, parse_tdx_quote
from ccai.verify import TrustAnchors, Verifier, default_ppcie_policy, default_switch_policy
from ccai.virtual import VirtualGpuBackend, open_virtual_vm

SWITCH_POLICY = default_switch_policy(allow_unchecked_revocation=True, allow_simulated=True)
SOURCE = Path(__file__).with_name("fake_nscq.c")
MISSING = (
    "NVIDIA's NSCQ library (libnvidia-nscq) is not installed: this machine has no NVSwitch "
    "driver, so its switches cannot be attested"
)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test NSCQ library, compiled for this machine."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler to build the ABI-compatible NSCQ test library")
    out = tmp_path_factory.mktemp("nscq") / "libnvidia-nscq.so.2"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o", str(out), str(SOURCE)],
        check=True,
        capture_output=True,
    )
    return out


class _Hgx:
    """The files the test library answers from, written from a virtual HGX system."""

    def __init__(self, root: Path, home: Path, library: Path) -> None:
        self.root = root
        self.library = library
        self.backend = VirtualGpuBackend.create(
            home=home, gpus=8, multi_gpu_mode=MultiGpuMode.PROTECTED_PCIE, switches=4
        )
        (root / "count").write_text("4")
        for i in range(4):
            d = root / str(i)
            d.mkdir()
            (d / "uuid").write_bytes(bytes([0xA0 + i]) + self.backend.switch_pdi(i) + bytes(7))
            (d / "arch").write_text("2")
            (d / "tnvl").write_text("3")
            (d / "certificate").write_bytes(self.backend.switch_certificate_chain(i))

    def answer(self, nonce: bytes) -> None:
        """Let every switch answer ``nonce`` (its report signed for exactly that nonce)."""
        for i in range(4):
            report = self.backend.switch_attestation_report(i, nonce)
            (self.root / str(i) / f"report-{nonce.hex()}").write_bytes(report)

    def set(self, name: str, value: str) -> None:
        (self.root / name).write_text(value)

    def sessions(self) -> str:
        path = self.root / "sessions"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def hgx(library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> _Hgx:
    root = tmp_path / "nscq"
    root.mkdir()
    monkeypatch.setenv("FAKE_NSCQ_DIR", str(root))
    monkeypatch.setenv(NSCQ_LIBRARY_ENV, str(library))
    return _Hgx(root, tmp_path / "home", library)


def _verifier(backend: VirtualGpuBackend, policy: object) -> Verifier:
    roots = backend.trust_anchors()
    return Verifier(
        anchors=TrustAnchors.simulated_test_pki(
            gpu_device_root=roots.device_root_pem, gpu_rim_root=roots.rim_root_pem
        ),
        allow_simulated=True,
        gpu_source=backend,  # type: ignore[arg-type]  # the virtual RIMs; revocation is not checked
        check_revocation=False,
        policy=policy,  # type: ignore[arg-type]
    )


def test_collected_switch_evidence_verifies_for_the_nonce(hgx: _Hgx) -> None:
    nonce = secrets.token_bytes(32)
    hgx.answer(nonce)
    source = nscq_switches()
    assert source.attested_switches() == 4
    assert source.labels[0] == "SWX-A0" + hgx.backend.switch_pdi(0).hex().upper() + "00" * 7
    assert set(source.archs.values()) == {"LS10"} and set(source.tnvl_status.values()) == {3}
    items = collect_switch_evidence(source, nonce)
    assert [i.arch for i in items] == ["LS10"] * 4
    assert all(i.parse_report().nonce == nonce for i in items)
    verifier = _verifier(hgx.backend, SWITCH_POLICY)
    verified = verifier.verify_switch(items, nonce=nonce)
    assert len(verified.switches) == 4
    assert all(s.claims["measres"] == "success" for s in verified.switches)
    pdis = sorted(s.claims["x-ccai-switch-pdi"] for s in verified.switches)
    assert pdis == sorted(hgx.backend.switch_pdi(i).hex().upper() for i in range(4))
    # Another nonce is not what the switches signed: the verifier refuses it.
    with pytest.raises(Exception, match="nonce"):
        verifier.verify_switch(items, nonce=secrets.token_bytes(32))
    # Every NSCQ session opened was destroyed.
    assert hgx.sessions().count("+") == hgx.sessions().count("-") > 0


def test_a_der_chain_is_returned_as_pem(hgx: _Hgx) -> None:
    nonce = secrets.token_bytes(32)
    hgx.answer(nonce)
    pem = hgx.backend.switch_certificate_chain(2)
    der = b"".join(c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(pem))
    (hgx.root / "2" / "certificate").write_bytes(der)
    assert NscqSwitches(ctypes.CDLL(str(hgx.library))).switch_certificate_chain(2) == pem
    items = collect_switch_evidence(nscq_switches(), nonce)
    verifier = _verifier(hgx.backend, SWITCH_POLICY)
    assert len(verifier.verify_switch(items, nonce=nonce).switches) == 4
    (hgx.root / "2" / "certificate").write_bytes(b"not a certificate")
    with pytest.raises(DeviceError, match="neither PEM nor DER"):
        nscq_switches().switch_certificate_chain(2)


def test_composite_bundle_carries_the_nscq_switches_for_the_derived_nonce(hgx: _Hgx, tmp_path: Path) -> None:
    """In a composite bundle the switches answer ccai's derived GPU nonce and the quote commits to them."""
    cpu, gpu = open_virtual_vm(tee="tdx", gpus=8, home=tmp_path / "home")
    nonce = secrets.token_bytes(32)
    hgx.answer(derive_gpu_nonce(nonce))
    bundle = collect_composite(nonce=nonce, cpu=cpu, gpu=gpu, switches=nscq_switches())
    assert len(bundle.switches) == 4
    assert bundle.cpu is not None
    report_data = composite_report_data(nonce, bundle.gpus, switches=bundle.switches)
    assert parse_tdx_quote(bundle.cpu.evidence).body.report_data == report_data
    policy = default_ppcie_policy(allow_unchecked_revocation=True, allow_simulated=True)
    gpu_nonce = derive_gpu_nonce(nonce)
    verified = _verifier(gpu, policy).verify_ppcie(bundle.gpus, bundle.switches, nonce=gpu_nonce)
    assert len(verified.gpus) == 8 and len(verified.switches) == 4


@pytest.mark.parametrize(
    ("setup", "name"),
    [
        (lambda h: h.set("session_rc", "-7"), "NSCQ_RC_ERROR_DRV (-7)"),
        (lambda h: h.set("1/rc-attestation_report", "-8"), "NSCQ_RC_ERROR_TIMEOUT (-8)"),
        (lambda h: h.set("3/rc-certificate", "-3"), "NSCQ_RC_ERROR_RESOURCE_NOT_MOUNTABLE (-3)"),
        (lambda h: h.set("0/rc-pcie_mode", "-6"), "NSCQ_RC_ERROR_UNSUPPORTED_DRV (-6)"),
        (lambda h: None, "NSCQ_RC_ERROR_UNEXPECTED_VALUE (-5)"),  # no report for this nonce
    ],
)
def test_an_nscq_error_is_a_device_error_naming_the_code(hgx: _Hgx, setup: object, name: str) -> None:
    nonce = secrets.token_bytes(32)
    hgx.answer(nonce)
    setup(hgx)  # type: ignore[operator]
    if "UNEXPECTED_VALUE" in name:
        nonce = secrets.token_bytes(32)  # one the switches were not given a report for
    with pytest.raises(DeviceError) as info:
        collect_switch_evidence(nscq_switches(), nonce)
    assert type(info.value) is DeviceError
    assert name in info.value.message
    assert hgx.sessions().count("+") == hgx.sessions().count("-")


@pytest.mark.parametrize(
    ("file", "value", "words"),
    [
        ("1/tnvl", "1", "not locked"),
        ("2/tnvl", "0", "not in TNVL mode"),
        ("3/tnvl", "2", "not in TNVL mode"),
        ("0/arch", "1", "is LR10"),
        ("count", "0", "no NVSwitch"),
    ],
)
def test_the_ppcie_pre_checks_refuse_a_switch_not_ready(hgx: _Hgx, file: str, value: str, words: str) -> None:
    hgx.set(file, value)
    with pytest.raises(DeviceNotSupported, match=words):
        nscq_switches()


def test_a_missing_library_keeps_the_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(NSCQ_LIBRARY_ENV, raising=False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with pytest.raises(DriverNotFound) as info:
        nscq_switches()
    assert info.value.message == MISSING
    monkeypatch.setenv(NSCQ_LIBRARY_ENV, str(tmp_path / "libnvidia-nscq.so.2"))
    with pytest.raises(DriverNotFound, match="could not be loaded"):
        nscq_switches()
    libc = ctypes.util.find_library("c")
    if libc is not None:  # a library without NSCQ's symbols
        with pytest.raises(DriverNotFound, match="lacks nscq_session_create"):
            nscq_switches(libc)


def _exit_4(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    """Run ``ccai ARGS --json``: it must exit 4; its JSON error."""
    monkeypatch.setattr(sys, "argv", ["ccai", *args, "--json"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 4
    return json.loads(capsys.readouterr().out)["error"]


def test_cli_attest_switches_goes_through_nscq(
    hgx: _Hgx,
    ccai_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``ccai attest --switches`` on real hardware: NSCQ's switches pass the pre-checks, then the
    command stops at the next missing device (this machine has no TEE / NVML), with that reason;
    an unlocked switch or an NSCQ error stops it at the switches, naming them."""
    out = tmp_path / "b.json"
    switches = ("attest", "--switches", "--nonce", "5a" * 32, "-o", str(out))
    error = _exit_4(monkeypatch, capsys, *switches)
    assert "NSCQ" not in error["message"] and "NVML" in error["message"]  # past the switches
    assert "+-" in hgx.sessions()
    hgx.set("1/tnvl", "1")
    error = _exit_4(monkeypatch, capsys, *switches)
    assert error["class"] == "DeviceNotSupported" and "not locked" in error["message"]
    hgx.set("session_rc", "-7")
    error = _exit_4(monkeypatch, capsys, *switches)
    assert error["class"] == "DeviceError" and "NSCQ_RC_ERROR_DRV (-7)" in error["message"]
    assert not out.exists()


def test_cli_attest_ppcie_checks_the_switches_first(
    hgx: _Hgx,
    ccai_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``ccai attest ppcie`` on real hardware: the switches through NSCQ and NVIDIA's pre-checks
    first; ready switches get it as far as NVML (absent here: exit 4 with that reason)."""
    error = _exit_4(monkeypatch, capsys, "attest", "ppcie")
    assert "NSCQ" not in error["message"] and "NVML" in error["message"]  # past the switches
    hgx.set("0/tnvl", "2")  # locked, but not in TNVL mode
    error = _exit_4(monkeypatch, capsys, "attest", "ppcie")
    assert error["class"] == "DeviceNotSupported" and "not in TNVL mode" in error["message"]
    hgx.set("3/rc-pcie_mode", "-7")
    error = _exit_4(monkeypatch, capsys, "attest", "ppcie")
    assert error["class"] == "DeviceError" and "NSCQ_RC_ERROR_DRV (-7)" in error["message"]

"""NVIDIA's own client against the service: ``nv-attestation-sdk`` (installed from PyPI into its own
cached venv) attests virtual-GPU evidence through ``Environment.REMOTE`` pointed at
``/v4/attest/gpu`` and validates the token with NVIDIA's remote v4 example policy; and the virtual
HGX system's NVSwitch evidence through ``Devices.SWITCH`` / ``Environment.REMOTE`` pointed at
``/v4/attest/switch`` with NVIDIA's remote v4 example switch policy.

The SDK's remote path takes evidence as an argument — ``Attestation.attest(evidence_list)`` — so the
test hands it the virtual GPU's evidence in NVIDIA's shape; ``get_evidence`` (which needs NVML and a
real GPU) is never called. The SDK fetches ``/.well-known/jwks.json`` from the verifier URL's host and
takes the key from ``x5c[0]``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from ccai.attest import collect_switch_evidence
from ccai.device import MultiGpuMode
from ccai.service import ServiceSettings, create_app
from ccai.virtual import (
    VirtualFault,
    VirtualGpuBackend,
    create_dev_collateral_app,
    run_in_background,
    settings_for_virtual_gpu,
    virtual_trust_anchors,
)

from .conftest import serve

pytestmark = [pytest.mark.extra("service"), pytest.mark.slow]

SDK = "nv-attestation-sdk==2.7.3"
POLICIES = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/attestation_sdk/tests/policies/remote/v4"
POLICY = f"{POLICIES}/NVGPURemotePolicyExample.json"
SWITCH_POLICY = f"{POLICIES}/NVSwitchRemotePolicyExample.json"

_CLIENT = r"""
import json, sys
from nv_attestation_sdk import attestation
args = json.load(open(sys.argv[1]))
client = attestation.Attestation()
client.set_name("ccai-test")
client.set_nonce(args["nonce"])
client.set_claims_version("3.0")
device = attestation.Devices.SWITCH if args.get("switch") else attestation.Devices.GPU
client.add_verifier(device, attestation.Environment.REMOTE, args["url"], "")
ok = client.attest(args["evidence"])
valid = client.validate_token(args["policy"])
print("RESULT " + json.dumps({"attest": bool(ok), "valid": bool(valid)}))
"""


def _sdk_python() -> Path:
    cache = (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "ccai-tests"
        / "nv-attestation-sdk-2.7.3"
    )
    python = cache / "bin" / "python"
    if (
        python.exists()
        and subprocess.run([python, "-c", "import nv_attestation_sdk"], check=False).returncode == 0
    ):
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(cache)], check=True)
    out = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", SDK],
        capture_output=True,
        timeout=600,
        check=False,
    )
    if out.returncode != 0:
        pytest.skip(f"cannot install {SDK} from PyPI (unreachable?): {out.stderr.decode()[-300:]}")
    return python


def _run_sdk(
    python: Path,
    tmp_path: Path,
    url: str,
    evidence: list[dict],
    nonce: bytes,
    policy: str,
    *,
    switch: bool = False,
) -> dict:
    args = tmp_path / f"args-{secrets.token_hex(4)}.json"
    doc = {"url": url, "evidence": evidence, "nonce": nonce.hex(), "policy": policy, "switch": switch}
    args.write_text(json.dumps(doc))
    script = tmp_path / "client.py"
    script.write_text(_CLIENT)
    out = subprocess.run(
        [python, str(script), str(args)], capture_output=True, timeout=120, cwd=tmp_path, check=False
    )
    lines = [line for line in out.stdout.decode().splitlines() if line.startswith("RESULT ")]
    assert lines, out.stdout.decode()[-2000:] + out.stderr.decode()[-2000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_nvidia_sdk_attests_against_the_service(dev_server, vectors: Path, tmp_path: Path) -> None:
    python = _sdk_python()
    backend, url = dev_server
    policy = (vectors / POLICY).read_text()
    settings = ServiceSettings.build(
        environ={},
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}",
        rim_service_url=url,
        ocsp_url=f"{url}/ocsp",
        allow_simulated=True,
        allow_anonymous=True,
    )

    def evidence(nonce: bytes) -> list[dict]:
        return [
            {
                "arch": "HOPPER",
                "evidence": base64.b64encode(backend.attestation_report(0, nonce)).decode(),
                "certificate": base64.b64encode(backend.certificate_chain(0)).decode(),
            }
        ]

    with serve(create_app(settings, anchors=virtual_trust_anchors(gpu=True))) as base:
        nonce = secrets.token_bytes(32)
        good = _run_sdk(python, tmp_path, base + "/v4/attest/gpu", evidence(nonce), nonce, policy)
        assert good == {"attest": True, "valid": True}
        backend.inject_fault(VirtualFault.MEASUREMENT_DRIFT)
        nonce = secrets.token_bytes(32)
        drift = _run_sdk(python, tmp_path, base + "/v4/attest/gpu", evidence(nonce), nonce, policy)
        assert drift == {"attest": False, "valid": False}


def test_nvidia_sdk_attests_switches_against_the_service(
    ccai_home: Path, vectors: Path, tmp_path: Path
) -> None:
    """``Devices.SWITCH`` in remote mode: the SDK posts ``{"nonce", "evidence_list", "arch": "LS10",
    "claims_version"}`` to the URL it is given, checks the overall token against the service's JWKS and
    validates every ``SWITCH-<i>`` token with NVIDIA's v4 switch policy."""
    python = _sdk_python()
    backend = VirtualGpuBackend.create(
        home=ccai_home, gpus=8, multi_gpu_mode=MultiGpuMode.PROTECTED_PCIE, switches=4
    )
    policy = (vectors / SWITCH_POLICY).read_text()

    def evidence(nonce: bytes) -> list[dict]:
        return [
            {
                "evidence": base64.b64encode(item.report).decode(),
                "certificate": base64.b64encode(item.certificate_chain).decode(),
            }
            for item in collect_switch_evidence(backend, nonce)
        ]

    with run_in_background(create_dev_collateral_app(settings_for_virtual_gpu(backend))) as url:
        settings = ServiceSettings.build(
            environ={},
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}",
            rim_service_url=url,
            ocsp_url=f"{url}/ocsp",
            allow_simulated=True,
            allow_anonymous=True,
        )
        with serve(create_app(settings, anchors=virtual_trust_anchors(gpu=True))) as base:
            endpoint = base + "/v4/attest/switch"
            nonce = secrets.token_bytes(32)
            good = _run_sdk(python, tmp_path, endpoint, evidence(nonce), nonce, policy, switch=True)
            assert good == {"attest": True, "valid": True}
            backend.inject_fault(VirtualFault.SWITCH_MEASUREMENT_DRIFT)
            nonce = secrets.token_bytes(32)
            drift = _run_sdk(python, tmp_path, endpoint, evidence(nonce), nonce, policy, switch=True)
            assert drift == {"attest": False, "valid": False}

"""The run manifest: what was measured, on what, with which software (serving-performance.md §2.3)."""

from __future__ import annotations

import os
import platform
import ssl
import sys
from dataclasses import asdict
from typing import Any

from ccai.bench._sweep import SweepResult
from ccai.errors import DeviceError

__all__ = ["collect_manifest", "gpu_state", "openssl_versions"]


def gpu_state() -> dict[str, Any]:
    """The GPU CC state as ``ccai gpu status`` reads it (NVML), or why it is unavailable.

    Returns:
        ``{"available": True, ...status fields...}`` or ``{"available": False, "reason": ...}``.
    """
    try:
        from ccai.device import NvmlBackend
    except ImportError as exc:
        return {"available": False, "reason": f"ccai.device cannot be imported: {exc}"}
    try:
        backend = NvmlBackend.open()
        try:
            status = backend.status()
        finally:
            close = getattr(backend, "close", None)
            if callable(close):
                close()
    except DeviceError as exc:
        return {"available": False, "reason": f"unavailable: {exc.message}"}
    return {
        "available": True,
        "driver_version": status.driver_version,
        "cc_feature": status.cc_feature,
        "devtools": status.devtools,
        "environment": status.environment,
        "multi_gpu_mode": str(status.multi_gpu_mode),
        "cpu_cc_capability": str(status.cpu_cc_capability),
        "gpus_ready": status.gpus_ready,
        "gpus": [{"index": g.index, "name": g.name, "uuid": g.uuid} for g in status.gpus],
    }


def openssl_versions() -> dict[str, str]:
    """OpenSSL builds in this process: Python's ``ssl`` and the one bundled with ``cryptography``.

    Returns:
        ``{"python_ssl": ..., "cryptography": ...}`` (``"not installed"`` when cryptography is absent).
    """
    out = {"python_ssl": ssl.OPENSSL_VERSION}
    try:
        from cryptography.hazmat.backends.openssl.backend import backend
    except ImportError:
        out["cryptography"] = "not installed"
    else:
        out["cryptography"] = str(backend.openssl_version_text())
    return out


def _attestation(result: SweepResult, arm: str) -> dict[str, Any] | None:
    """An EHBP arm's verified attestation: the summary rows, the claims, the re-attestation count."""
    attestation = result.attestations.get(arm)
    if attestation is None:
        return None
    return {
        "summary": dict(attestation.summary()),
        "document": attestation.summary_document(),
        "reattestations": result.reattestations.get(arm, 0),
    }


def collect_manifest(
    result: SweepResult, *, argv: list[str] | None = None, gpu: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Everything a reader needs to interpret or repeat the sweep.

    Args:
        result: The finished sweep (or a snapshot of one in progress).
        argv: The command line, when run from the CLI.
        gpu: The GPU state, when already read (:func:`gpu_state`; read here otherwise).

    Returns:
        A JSON-friendly dict.
    """
    import httpx
    import numpy

    import ccai

    config = asdict(result.config)
    config["ios"] = [io.label for io in result.config.ios]
    return {
        "tool": "ccai bench serve",
        "ccai_version": getattr(ccai, "__version__", "unknown"),
        "argv": argv,
        "mode": result.config.mode,
        "config": config,
        "started_at": result.started_at.isoformat(),
        "finished_at": result.finished_at.isoformat(),
        "arms": {
            arm: {
                "url": result.config.url if arm == "A" else result.config.baseline_url,
                "model": result.config.model
                if arm == "A"
                else (result.config.baseline_model or result.config.model),
                "output_control": result.output_controls.get(arm),
                "engine": asdict(info),
                "ehbp": result.config.arm_ehbp(arm),
                "attestation": _attestation(result, arm),
            }
            for arm, info in result.engines.items()
        },
        "correctness_check": None
        if result.check is None
        else {
            "prompts": len(result.check.prompts),
            "matches": result.check.matches,
            "ok": result.check.ok,
            "outputs_a": list(result.check.outputs_a),
            "outputs_b": list(result.check.outputs_b),
        },
        "stopped": result.stopped,
        "not_run": [f"{io.label} c={c}" for io, c in result.not_run],
        "gpu": gpu if gpu is not None else gpu_state(),
        "openssl": openssl_versions(),
        "host": {
            "hostname": platform.node(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "client_versions": {"httpx": httpx.__version__, "numpy": numpy.__version__},
        "ci_method": "paired t interval (df = pairs - 1) on ln(A/B) per repeat, mapped to percent",
        "warnings": list(result.warnings),
    }

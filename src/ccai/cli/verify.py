"""``ccai verify …``: verify evidence and appraise it with a policy.

One sub-command per evidence kind; each lives in its own module and is mounted here.
"""

from __future__ import annotations

import typer

from ccai.cli import verify_bundle, verify_cpu, verify_gpu, verify_switch

__all__ = ["app"]

app = typer.Typer(
    name="verify",
    help="Verify attestation evidence against pinned roots, collateral and a policy.",
    no_args_is_help=True,
    # `ccai verify BUNDLE` is short for `ccai verify bundle BUNDLE` (composite evidence).
    cls=verify_bundle.VerifyGroup,
)

# Composite CPU + GPU evidence bundles (docs/composite-evidence.md).
app.command("bundle")(verify_bundle.bundle_command)

# NVIDIA GPU evidence (docs/gpu-verification.md).
app.command("gpu")(verify_gpu.gpu_command)
app.command("switch")(verify_switch.switch_command)
# Raw CPU TEE evidence (docs/cpu-evidence.md).
app.command("tdx")(verify_cpu.tdx_command)
app.command("snp")(verify_cpu.snp_command)

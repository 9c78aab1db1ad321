"""The virtual hardware's test PKIs as one :class:`~ccai.verify.TrustAnchors` value.

ccai's virtual CC GPU and virtual TDX/SNP guest sign with test PKIs generated from seeds kept under
``$CCAI_HOME``. :func:`virtual_trust_anchors` reads those seeds and returns the roots as
``TrustAnchors.simulated_test_pki(...)``: a verifier trusts them only when asked for simulation by
name (``Verifier.simulated(...)``, ``allow_simulated=True``, ``--allow-simulated``).
"""

from __future__ import annotations

from pathlib import Path

from ccai._home import ccai_home
from ccai.verify import TrustAnchors
from ccai.virtual._gpu import VirtualGpuBackend
from ccai.virtual._snp import SnpPlatform
from ccai.virtual._tee import VirtualCpuTee
from ccai.virtual._tee_pki import VirtualTeePki

__all__ = ["virtual_trust_anchors"]


def virtual_trust_anchors(
    home: Path | None = None, *, gpu: bool = True, tdx: bool = False, snp: bool = False
) -> TrustAnchors:
    """The test-PKI roots of the virtual GPU and virtual CPU TEE under ``home``.

    Only the parts asked for are built (the SNP hierarchy uses RSA keys, slow to make the first
    time).

    Args:
        home: The state directory (default ``$CCAI_HOME``); missing virtual hardware is created
            with its defaults, as ``open()`` does.
        gpu: Include the virtual GPU's device-identity and CoRIM signing roots.
        tdx: Include the virtual TDX guest's SGX root.
        snp: Include the virtual SNP guest's ARK and ASK.

    Returns:
        ``simulated=True`` anchors.

    Raises:
        UsageError: a state file under ``home`` is damaged.
    """
    home = home if home is not None else ccai_home()
    device_root = rim_root = None
    if gpu:
        roots = VirtualGpuBackend.open(home).trust_anchors()
        device_root, rim_root = roots.device_root_pem, roots.rim_root_pem
    sgx_root = ark = ask = None
    product = None
    if tdx or snp:
        pki = VirtualTeePki(VirtualCpuTee.open(home).seed, cache_dir=home)
        if tdx:
            sgx_root = pki.sgx_root.certificate
        if snp:
            product = SnpPlatform().product
            ark, ask = pki.ark(product).certificate, pki.ask(product).certificate
    return TrustAnchors.simulated_test_pki(
        gpu_device_root=device_root,
        gpu_rim_root=rim_root,
        sgx_root=sgx_root,
        amd_ark=ark,
        amd_ask=ask,
        amd_product=product,
        name="ccai virtual hardware test PKI",
    )

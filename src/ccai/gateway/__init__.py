"""gateway stage of ccai: the confidential inference gateway (``ccai serve gateway``).

An OpenAI-compatible endpoint that serves only after attestation and key release
(docs/confidential-serving.md). :class:`GatewayBoot` walks the named :class:`BootState` s —
collect composite evidence binding the gateway's HPKE key, fetch the model KEK through RCAR (or a
KEK file), load the sealed model into device memory (or unseal it into RAM for an external engine
such as vLLM or SGLang started with :class:`UpstreamEngine`), set the GPUs ready — and fails closed
with a reason. :class:`GatewayApp` answers ``/health`` and ``/metrics`` always, and the attestation
document (:data:`ATTESTATION_PATH`, collected by :class:`Attester`) and the EHBP-wrapped inference
routes only when ready; :class:`UpstreamProxy` forwards to an external engine without buffering.
:func:`run_gateway` serves it all under uvicorn.

Importing this package imports neither FastAPI, uvicorn, httpx nor torch.
"""

from ccai.gateway._app import ATTESTATION_PATH, GatewayApp, run_gateway
from ccai.gateway._attester import Attester
from ccai.gateway._boot import BootState, GatewayBoot, GatewayConfig
from ccai.gateway._upstream import EngineStartError, UpstreamEngine, UpstreamProxy

__all__ = [
    "ATTESTATION_PATH",
    "Attester",
    "BootState",
    "EngineStartError",
    "GatewayApp",
    "GatewayBoot",
    "GatewayConfig",
    "UpstreamEngine",
    "UpstreamProxy",
    "run_gateway",
]

"""OpenAI-protocol pieces shared by the serving benchmark, the gateway and the verifying client.

Nothing here knows about attestation: it is the protocol an OpenAI-compatible engine speaks, and
how to start one for development.

* **SSE** — :class:`SseParser`, an incremental Server-Sent Events parser fed one socket read at a
  time (WHATWG rules), so a client can timestamp each event and a gateway can forward each one as it
  arrives instead of buffering the response.
* **Requests** — bodies for ``/v1/completions`` (:func:`completion_request`) and
  ``/v1/chat/completions`` (:func:`chat_completion_request`), streaming or not, with
  ``stream_options.include_usage`` and the engines' fixed-length fields (:data:`OutputControl`,
  :func:`fixed_length_fields`); URLs below ``/v1`` (:func:`v1_url`, :func:`api_path`).
* **Responses** — :func:`choice_text` and :func:`read_usage` read a response or stream chunk;
  :data:`STREAM_DONE` ends a stream.
* **Engines** — ``transformers serve`` for development: :func:`engine_command` builds its command
  line, :func:`wait_healthy` waits for ``/health``, :func:`random_model_dir` makes a randomly
  initialised model of a public architecture's shapes (needs the ``torch`` extra).
* **In-process engine** — :class:`TransformersEngine` generates with an already-loaded transformers
  model (a sealed model loaded straight into GPU memory, for instance) on a worker thread and streams
  :class:`GenerationDelta` items; :func:`create_engine_app` serves it with the OpenAI API (FastAPI,
  imported only then), streaming or not.
"""

from ccai.openai_protocol._engine import (
    RANDOM_SIZES,
    EngineCommand,
    default_attn_implementation,
    engine_command,
    random_model_dir,
    wait_healthy,
)
from ccai.openai_protocol._engine_app import create_engine_app
from ccai.openai_protocol._inprocess import (
    EngineOverloaded,
    Generation,
    GenerationDelta,
    SamplingParams,
    TransformersEngine,
)
from ccai.openai_protocol._requests import (
    Api,
    OutputControl,
    api_path,
    chat_completion_request,
    completion_request,
    fixed_length_fields,
    v1_url,
)
from ccai.openai_protocol._responses import STREAM_DONE, Usage, choice_text, read_usage
from ccai.openai_protocol._sse import SseEvent, SseParser

__all__ = [
    "RANDOM_SIZES",
    "STREAM_DONE",
    "Api",
    "EngineCommand",
    "EngineOverloaded",
    "Generation",
    "GenerationDelta",
    "OutputControl",
    "SamplingParams",
    "SseEvent",
    "SseParser",
    "TransformersEngine",
    "Usage",
    "api_path",
    "chat_completion_request",
    "choice_text",
    "completion_request",
    "create_engine_app",
    "default_attn_implementation",
    "engine_command",
    "fixed_length_fields",
    "random_model_dir",
    "read_usage",
    "v1_url",
    "wait_healthy",
]

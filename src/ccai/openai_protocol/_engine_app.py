"""The OpenAI-compatible HTTP API of a :class:`~ccai.openai_protocol.TransformersEngine` (FastAPI).

Routes: ``GET /health``, ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions``
(streaming and not). Request bodies are read as bytes and parsed with ``ccai._json.load_json``
(depth-limited, strict); every refusal is OpenAI's error object
``{"error": {"message", "type", "param", "code"}}`` with 400 (bad request), 503 (too many requests
pending) or 500 (generation failed; the cause is logged, never sent). A stream is one SSE event per
text delta, each handed to the server as soon as the engine produces it, then ``data: [DONE]``; with
``stream_options.include_usage`` a last chunk with empty ``choices`` carries the usage, as OpenAI's
API does. When the client goes away mid-stream the generation is cancelled.

Fields beyond OpenAI's: ``ignore_eos`` and ``min_tokens`` (vLLM's names) and ``generation_config``
(transformers serve's JSON string; its ``max_new_tokens``, ``min_new_tokens`` and ``do_sample`` are
honoured), so the serving benchmark's fixed-length requests work unchanged
(:func:`~ccai.openai_protocol.fixed_length_fields`).
"""

# No ``from __future__ import annotations``: FastAPI reads the route functions' annotations, and
# ``Request`` is imported inside create_engine_app (FastAPI stays an optional import).
import json
import logging
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ccai._json import load_json
from ccai._time import utcnow
from ccai.errors import Error, UsageError
from ccai.openai_protocol._inprocess import (
    EngineOverloaded,
    Generation,
    GenerationDelta,
    SamplingParams,
    TransformersEngine,
)
from ccai.openai_protocol._responses import STREAM_DONE

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["create_engine_app"]

_log = logging.getLogger("ccai.engine")

_ROLES = {"system", "user", "assistant", "developer", "tool"}
_UNSUPPORTED_TRUTHY = ("logprobs", "top_logprobs", "echo", "suffix", "tools", "functions")


class _BadRequest(Exception):
    """A request the API refuses: status, OpenAI error type, message, parameter name."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.code = code


def _error_body(
    message: str, *, kind: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _int(body: dict[str, Any], name: str, *, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _BadRequest(f"{name} must be an integer ≥ {minimum}", param=name)
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise _BadRequest(f"{name} must be a number between {low:g} and {high:g}", param=name)
    return float(value)


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _BadRequest(f"{name} must be a boolean", param=name)
    return value


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > 4 or not all(isinstance(s, str) and s for s in items):
        raise _BadRequest("stop must be a non-empty string or a list of at most 4 of them", param="stop")
    return tuple(items)


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    raw = body.get("generation_config")
    if raw is None:
        return {}
    if isinstance(raw, str):
        try:
            raw = load_json(raw, what="generation_config", max_depth=4, error=UsageError)
        except UsageError as exc:
            raise _BadRequest(exc.message, param="generation_config") from None
    if not isinstance(raw, dict):
        raise _BadRequest("generation_config must be a JSON object", param="generation_config")
    return raw


def _sampling(body: dict[str, Any], *, default_max: int) -> SamplingParams:
    """SamplingParams from a request body (shared by both endpoints)."""
    for name in _UNSUPPORTED_TRUTHY:
        if body.get(name):
            raise _BadRequest(f"{name} is not supported by this engine", param=name)
    n = _int(body, "n", minimum=1)
    if n not in (None, 1):
        raise _BadRequest("only n = 1 is supported", param="n")
    best_of = _int(body, "best_of", minimum=1)
    if best_of not in (None, 1):
        raise _BadRequest("only best_of = 1 is supported", param="best_of")
    gen = _generation_config(body)
    max_tokens = _int(body, "max_completion_tokens", minimum=1)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", minimum=1)
    if max_tokens is None:
        max_tokens = _int(gen, "max_new_tokens", minimum=1)
    min_tokens = _int(body, "min_tokens", minimum=0)
    if min_tokens is None:
        min_tokens = _int(gen, "min_new_tokens", minimum=0)
    temperature = _number(body, "temperature", 0.0, 2.0)
    if gen.get("do_sample") is False:
        temperature = None
    elif gen.get("do_sample") is True and not temperature:
        temperature = _number(gen, "temperature", 0.0, 100.0) or 1.0
    top_p = _number(body, "top_p", 0.0, 1.0)
    if top_p == 0.0:
        raise _BadRequest("top_p must be above 0", param="top_p")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
        raise _BadRequest("seed must be a non-negative integer below 2^63", param="seed")
    return SamplingParams(
        max_tokens=max_tokens if max_tokens is not None else default_max,
        temperature=temperature,
        top_p=1.0 if top_p is None else top_p,
        seed=seed,
        stop=_stop(body),
        ignore_eos=_bool(body, "ignore_eos"),
        min_tokens=min_tokens or 0,
    )


def _messages(body: dict[str, Any]) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("messages must be a non-empty list", param="messages")
    out: list[dict[str, str]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise _BadRequest(f"{where} needs a role ({', '.join(sorted(_ROLES))})", param=where)
        content = message.get("content")
        if isinstance(content, list):  # content parts: only text is understood by a text-only model
            texts = []
            for part in content:
                if (
                    not isinstance(part, dict)
                    or part.get("type") != "text"
                    or not isinstance(part.get("text"), str)
                ):
                    raise _BadRequest(f"{where}.content: only text parts are supported", param=where)
                texts.append(part["text"])
            content = "".join(texts)
        elif content is None and message["role"] == "assistant":
            content = ""
        if not isinstance(content, str):
            raise _BadRequest(f"{where}.content must be a string or a list of text parts", param=where)
        role = "system" if message["role"] == "developer" else message["role"]
        out.append({"role": role, "content": content})
    return out


def _prompt_ids(engine: TransformersEngine, prompt: Any) -> list[int]:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        if not prompt:
            raise _BadRequest("prompt must not be empty", param="prompt")
        return engine.text_prompt(prompt)
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
    ):
        return list(prompt)
    raise _BadRequest(
        "prompt must be a non-empty string or list of token ids (one prompt per request)", param="prompt"
    )


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _sse(obj: dict[str, Any] | str) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return f"data: {data}\n\n".encode()


class _Api:
    """Builds the responses of one endpoint (``chat`` or ``completions``) for one request."""

    def __init__(self, chat: bool, model: str) -> None:
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
        self.created = int(utcnow().timestamp())
        self.model = model

    def _envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }

    def chunk(self, text: str | None, finish: str | None, *, role: bool = False) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text is not None and not role:
                delta["content"] = text
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return self._envelope("chat.completion.chunk", [choice])
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        return self._envelope("text_completion", [choice])

    def complete(self, text: str, finish: str, usage: dict[str, int]) -> dict[str, Any]:
        if self.chat:
            message = {"role": "assistant", "content": text}
            choice: dict[str, Any] = {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish,
            }
            body = self._envelope("chat.completion", [choice])
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            body = self._envelope("text_completion", [choice])
        body["usage"] = usage
        return body

    def usage_chunk(self, usage: dict[str, int]) -> dict[str, Any]:
        body = self._envelope("chat.completion.chunk" if self.chat else "text_completion", [])
        body["usage"] = usage
        return body


def _finish(delta: GenerationDelta) -> str:
    # "abort" happens only when the client is gone; report it as "stop" if it is ever seen.
    return "length" if delta.finish_reason == "length" else "stop"


async def _stream(api: _Api, generation: Generation, include_usage: bool) -> AsyncIterator[bytes]:
    completion_tokens = 0
    try:
        if api.chat:
            first = api.chunk(None, None, role=True)
            if include_usage:
                first["usage"] = None
            yield _sse(first)
        async for delta in generation:
            completion_tokens = delta.completion_tokens
            if delta.finish_reason is None:
                chunk = api.chunk(delta.text, None)
            elif delta.text:
                chunk = api.chunk(delta.text, None)
                if include_usage:
                    chunk["usage"] = None
                yield _sse(chunk)
                chunk = api.chunk(None, _finish(delta))
            else:
                chunk = api.chunk(None if api.chat else "", _finish(delta))
            if include_usage:
                chunk["usage"] = None
            yield _sse(chunk)
        if include_usage:
            yield _sse(api.usage_chunk(_usage(generation.prompt_tokens, completion_tokens)))
    except RuntimeError as exc:
        _log.error("generation failed: %r", exc.__cause__)
        yield _sse(_error_body("generation failed", kind="server_error"))
    finally:
        generation.cancel()
    yield _sse(STREAM_DONE)


def create_engine_app(engine: TransformersEngine) -> "FastAPI":
    """The FastAPI app serving ``engine`` with the OpenAI API (see the module docstring).

    Args:
        engine: The engine; the app closes it when its lifespan ends.

    Returns:
        The app (mount it, or serve it with uvicorn).
    """
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request, Response
    from fastapi.responses import JSONResponse, StreamingResponse

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.close()

    app = FastAPI(
        title="ccai in-process engine", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )

    def error(exc: _BadRequest) -> Response:
        kind = "invalid_request_error" if exc.status < 500 else "server_error"
        return JSONResponse(_error_body(exc.message, kind=kind, param=exc.param, code=exc.code), exc.status)

    async def read_body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = load_json(raw, what="request body", error=UsageError)
        except UsageError as exc:
            raise _BadRequest(exc.message) from None
        if not isinstance(body, dict):
            raise _BadRequest("the request body must be a JSON object")
        model = body.get("model")
        if model != engine.model_name:
            raise _BadRequest(
                f"the model {model!r} is not served here; this server serves {engine.model_name!r}",
                param="model",
                code="model_not_found",
            )
        return body

    async def run(request: Request, chat: bool) -> Response:
        try:
            body = await read_body(request)
            ids = engine.chat_prompt(_messages(body)) if chat else _prompt_ids(engine, body.get("prompt"))
            # OpenAI's defaults: 16 tokens for completions, the rest of the context for chat.
            default_max = 16 if not chat else max(1, engine.context_length - len(ids))
            params = _sampling(body, default_max=default_max)
            stream = _bool(body, "stream")
            options = body.get("stream_options") or {}
            if not isinstance(options, dict):
                raise _BadRequest("stream_options must be an object", param="stream_options")
            include_usage = stream and _bool(options, "include_usage")
            generation = engine.submit(ids, params)
        except _BadRequest as exc:
            return error(exc)
        except EngineOverloaded as exc:
            return error(_BadRequest(exc.message, status=503, code="overloaded"))
        except Error as exc:
            return error(_BadRequest(exc.message))
        api = _Api(chat, engine.model_name)
        if stream:
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            return StreamingResponse(
                _stream(api, generation, include_usage), media_type="text/event-stream", headers=headers
            )
        text: list[str] = []
        last: GenerationDelta | None = None
        try:
            async for delta in generation:
                text.append(delta.text)
                last = delta
        except RuntimeError as exc:
            _log.error("generation failed: %r", exc.__cause__)
            return error(_BadRequest("generation failed", status=500))
        finally:
            generation.cancel()
        if last is None:  # the iterator always ends with a finish delta; never reached
            return error(_BadRequest("generation ended without a result", status=500))
        usage = _usage(generation.prompt_tokens, last.completion_tokens)
        return JSONResponse(api.complete("".join(text), _finish(last), usage))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": engine.model_name, "pending": engine.pending}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": engine.model_name, "object": "model", "created": 0, "owned_by": "ccai"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await run(request, True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await run(request, False)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        _log.error("unexpected error: %r", exc)
        return JSONResponse(_error_body("internal error", kind="server_error"), 500)

    return app

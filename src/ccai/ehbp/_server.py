"""EHBP for ASGI servers: :class:`EhbpMiddleware` decrypts request bodies and encrypts response
bodies around any ASGI application, without buffering either.

Per request, in order:

1. ``GET /.well-known/hpke-keys`` is answered here with the current key configuration.
2. No ``Ehbp-Encapsulated-Key``: passed through in plaintext when the path is exempt or plaintext is
   allowed; refused otherwise (400 problem, ``urn:ccai:ehbp:encryption-required``).
3. A malformed ``Ehbp-Encapsulated-Key`` (not hex, not 32 bytes, repeated): 400.
4. The HPKE receiver context is set up and the body read up to its first frame, which must
   authenticate. A failure here (decapsulation, or the first frame under the current key) is what a
   client encrypting to a stale key produces, so it is answered with the 422 key-configuration
   problem (``urn:ietf:params:ehbp:error:key-config``), in plaintext: the client had no usable
   context. Which of the two failed is never said (SPEC §5.4.4). A body with no frame at all
   cannot authenticate the encapsulated key (SPEC §7.4) and gets 400.
5. The application runs. Each later request frame is decrypted when the application asks for more
   body; a frame that fails (AEAD, framing, size) ends the body with ``http.disconnect``, and the
   exchange ends with an encrypted 400, or, when the application had already started its
   response, with an aborted connection: no plaintext past a failed frame is ever delivered.
6. Every ``http.response.body`` message the application sends leaves at once as sealed frames
   (SSE events stream through); ``Content-Length`` is dropped (the body is chunked) and
   ``Ehbp-Response-Nonce`` added. An application error before its response started is answered
   with an encrypted 500.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

from ccai.ehbp._errors import AeadDecryptFailed, HpkeSetupFailed, InvalidEncapsulatedKey
from ccai.ehbp._protocol import (
    ENCAPSULATED_KEY_HEADER,
    FRAME_SIZE,
    KEY_CONFIG_PROBLEM_TYPE,
    KEYS_MEDIA_TYPE,
    KEYS_PATH,
    MAX_FRAME_LENGTH,
    PROBLEM_MEDIA_TYPE,
    RESPONSE_NONCE_HEADER,
    FrameReader,
    RequestOpener,
    ResponseCipher,
    ServerKey,
    parse_encapsulated_key,
)
from ccai.errors import EhbpError

__all__ = ["DEFAULT_EXEMPT_PATHS", "ENCRYPTION_REQUIRED_PROBLEM_TYPE", "EhbpMiddleware", "KeyProvider"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: A callable returning the key to use now (called once per request), for keys rotated elsewhere.
KeyProvider = Callable[[], ServerKey]

#: Paths served in plaintext even when plaintext is otherwise refused: health, metrics, key
#: discovery and the attestation document (which binds the key and must be readable before it).
DEFAULT_EXEMPT_PATHS: tuple[str, ...] = (
    "/health",
    "/metrics",
    KEYS_PATH,
    "/.well-known/ccai/attestation",
)
#: ``type`` of the problem a plaintext request to a protected path gets.
ENCRYPTION_REQUIRED_PROBLEM_TYPE = "urn:ccai:ehbp:encryption-required"

_log = logging.getLogger("ccai.ehbp")
_ENC_HEADER = ENCAPSULATED_KEY_HEADER.lower().encode()
_NONCE_HEADER = RESPONSE_NONCE_HEADER.lower().encode()
# Framing of the plaintext the app sees or sends; the encrypted body has its own (chunked).
_FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding"})
# Server extensions that would let the app send bytes around this middleware.
_BYPASS_EXTENSIONS = ("http.response.pathsend", "http.response.zerocopysend", "http.response.trailers")


class EhbpMiddleware:
    """Pure ASGI middleware speaking EHBP (Tinfoil's wire format) in front of ``app``.

    Args:
        app: The ASGI application to protect.
        key: The server's :class:`ServerKey`, or a :data:`KeyProvider` called once per request.
        allow_plaintext: Pass requests without ``Ehbp-Encapsulated-Key`` to ``app`` on every path
            (development only; the default refuses them outside ``exempt_paths``).
        exempt_paths: Paths that accept plaintext requests whatever ``allow_plaintext`` says.
        max_frame_length: Largest request frame accepted (ciphertext bytes).
        frame_size: Largest plaintext sealed into one response frame; a larger body message is
            sealed as several frames sent together.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        key: ServerKey | KeyProvider,
        allow_plaintext: bool = False,
        exempt_paths: Collection[str] = DEFAULT_EXEMPT_PATHS,
        max_frame_length: int = MAX_FRAME_LENGTH,
        frame_size: int = FRAME_SIZE,
    ) -> None:
        self.app = app
        self._provider: KeyProvider = _constant(key) if isinstance(key, ServerKey) else key
        self.allow_plaintext = allow_plaintext
        self.exempt_paths = frozenset(exempt_paths) | {KEYS_PATH}
        self._max_frame_length = max_frame_length
        self._frame_size = frame_size

    @property
    def key(self) -> ServerKey:
        """The key requests are decrypted with now."""
        return self._provider()

    def rotate(self, key: ServerKey | KeyProvider) -> None:
        """Replace the key. Requests already running finish with the key they started with; a client
        still encrypting to the old key gets the 422 key-configuration problem from now on."""
        self._provider = _constant(key) if isinstance(key, ServerKey) else key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        kind = scope["type"]
        path = scope.get("path", "")
        if kind == "websocket" and not self._plaintext_allowed(path):
            # WebSocket frames cannot carry EHBP bodies: refuse the handshake (HTTP 403).
            await send({"type": "websocket.close", "code": 1008, "reason": "EHBP encryption required"})
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        app = self._serve_key_config if path == KEYS_PATH else self.app
        encs = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == _ENC_HEADER]
        if not encs:
            if self._plaintext_allowed(path):
                await app(scope, receive, send)
            else:
                _log.info("refused a plaintext request to %s", path)
                await _send_problem(
                    send,
                    400,
                    ENCRYPTION_REQUIRED_PROBLEM_TYPE,
                    "encryption required",
                    detail="this server accepts only EHBP-encrypted request bodies "
                    f"({ENCAPSULATED_KEY_HEADER}); its key is at {KEYS_PATH}",
                )
            return
        await self._encrypted(app, scope, receive, send, encs)

    def _plaintext_allowed(self, path: str) -> bool:
        return self.allow_plaintext or path in self.exempt_paths

    async def _encrypted(
        self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, encs: list[str]
    ) -> None:
        # (3) the encapsulated key is well formed
        try:
            enc = parse_encapsulated_key(encs)
        except InvalidEncapsulatedKey as exc:
            _log.info("refused an encrypted request: %s", exc.code)
            await _send_problem(send, 400, "about:blank", "invalid encrypted request")
            return
        # (4) decapsulation and the first frame: both fail the same way for a stale key
        body: _RequestBody | None = None
        try:
            opener = self.key.open_request(enc)
            body = _RequestBody(receive, opener, self._max_frame_length)
            authenticated = await body.first()
        except (HpkeSetupFailed, AeadDecryptFailed) as exc:
            _log.info("refused an encrypted request (key configuration): %s", exc.code)
            await _send_problem(send, 422, KEY_CONFIG_PROBLEM_TYPE, "key configuration mismatch")
            return
        except EhbpError as exc:  # framing: truncated, or a frame over the limit
            _log.info("refused an encrypted request: %s", exc.code)
            await _send_problem(send, 400, "about:blank", "invalid encrypted request")
            return
        if not authenticated:
            await _send_problem(
                send,
                400,
                "about:blank",
                "invalid encrypted request",
                detail="an encrypted request carries at least one frame",
            )
            return
        # (5) and (6): the application runs between the two ciphers
        nonce = secrets.token_bytes(32)
        response = _Response(send, opener.response_cipher(nonce), nonce, body, self._frame_size)
        if body.failed():  # a later frame of the first batch failed already
            await response.error(400, "invalid encrypted request")
            return
        try:
            await app(_inner_scope(scope), body.receive, response.send)
        except Exception:
            if body.failed():
                pass  # the app saw http.disconnect and gave up; answered below
            elif not response.started:
                await response.error(500, "internal error")
                raise
            else:
                raise
        if body.failed():
            _log.info("an encrypted request body failed after its first frame")
            if response.started:
                # Part of the response left already; abort the connection rather than end it cleanly.
                raise AeadDecryptFailed("request body failed after the response started")
            await response.error(400, "invalid encrypted request")

    async def _serve_key_config(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await send({"type": "http.response.start", "status": 405, "headers": [(b"allow", b"GET, HEAD")]})
            await send({"type": "http.response.body", "body": b""})
            return
        config = self.key.key_config().encode()
        headers = [(b"content-type", KEYS_MEDIA_TYPE.encode()), (b"cache-control", b"no-store")]
        headers.append((b"content-length", str(len(config)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else config})


def _constant(key: ServerKey) -> KeyProvider:
    return lambda: key


def _inner_scope(scope: Scope) -> Scope:
    """The scope the application sees: no framing headers of the encrypted body, no extension that
    would let a response bypass encryption, and ``extensions["ccai.ehbp"]`` saying it was encrypted."""
    inner = dict(scope)
    inner["headers"] = [(k, v) for k, v in scope.get("headers", ()) if k.lower() not in _FRAMING_HEADERS]
    extensions = {k: v for k, v in (scope.get("extensions") or {}).items() if k not in _BYPASS_EXTENSIONS}
    extensions["ccai.ehbp"] = {"encrypted": True}
    inner["extensions"] = extensions
    return inner


class _RequestBody:
    """The decrypted request body, handed to the application as ASGI ``http.request`` messages."""

    def __init__(self, receive: Receive, opener: RequestOpener, max_frame_length: int) -> None:
        self._receive = receive
        self._opener = opener
        self._reader = FrameReader(max_frame_length)
        self._pending: list[bytes] = []
        self._frames = 0
        self._ended = False  # the encrypted body was read to its end
        self._delivered = False  # the app got more_body=False
        self._disconnected = False
        self._failed = False

    async def _pull(self) -> None:
        message = await self._receive()
        if message["type"] != "http.request":
            self._disconnected = True
            return
        try:
            for ciphertext in self._reader.feed(message.get("body", b"")):
                self._pending.append(self._opener.open(ciphertext))
                self._frames += 1
            if not message.get("more_body", False):
                self._reader.finish()
                self._ended = True
        except EhbpError:
            if not self._frames:
                raise  # the first frame: the caller answers (422 or 400)
            self._failed = True  # a later frame: the exchange ends in an error, the app sees disconnect

    def failed(self) -> bool:
        """Whether a frame after the first failed (the exchange then ends in an error)."""
        return self._failed

    def _stopped(self) -> bool:
        return self._failed or self._disconnected

    async def first(self) -> bool:
        """Read until the first frame authenticated; ``False`` when the body ended without one.

        Raises:
            EhbpError: the first frame failed (AEAD, framing, size).
        """
        while not self._frames and not self._ended and not self._disconnected and not self._failed:
            await self._pull()
        return self._frames > 0

    async def receive(self) -> Message:
        """The application's ``receive``."""
        if self._stopped():
            return {"type": "http.disconnect"}
        if self._delivered:
            return await self._receive()  # waits for the client to disconnect
        while not self._pending and not self._ended:
            await self._pull()
            if self._stopped():
                return {"type": "http.disconnect"}
        body = b"".join(self._pending)
        self._pending.clear()
        self._delivered = self._ended
        return {"type": "http.request", "body": body, "more_body": not self._ended}


class _Response:
    """The application's ``send``: seals each body message as it comes."""

    def __init__(
        self, send: Send, cipher: ResponseCipher, nonce: bytes, body: _RequestBody, frame_size: int
    ) -> None:
        self._send = send
        self._cipher = cipher
        self._nonce = nonce.hex().encode()
        self._body = body
        self._frame_size = frame_size
        self.started = False

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self._body.failed():
            return  # the exchange ends with an error once the app returns
        if kind == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in _FRAMING_HEADERS]
            headers.append((_NONCE_HEADER, self._nonce))
            self.started = True
            await self._send({"type": kind, "status": message["status"], "headers": headers})
        elif kind == "http.response.body":
            plaintext = bytes(message.get("body", b""))
            more = bool(message.get("more_body", False))
            sealed = self._cipher.seal_all(plaintext, frame_size=self._frame_size)
            if sealed or not more:
                await self._send({"type": kind, "body": sealed, "more_body": more})
        else:
            raise HpkeSetupFailed(f"cannot seal ASGI message {kind!r}")

    async def error(self, status: int, title: str) -> None:
        """An encrypted problem response (the request context was established)."""
        document = json.dumps({"type": "about:blank", "title": title, "status": status}).encode()
        await self._send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (_NONCE_HEADER, self._nonce)],
            }
        )
        await self._send({"type": "http.response.body", "body": self._cipher.seal_all(document)})


async def _send_problem(
    send: Send, status: int, type_: str, title: str, *, detail: str | None = None
) -> None:
    """A plaintext ``application/problem+json`` response (RFC 9457)."""
    problem: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail is not None:
        problem["detail"] = detail
    document = json.dumps(problem).encode()
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(document)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": document})

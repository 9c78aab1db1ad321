"""EHBP for httpx clients: :class:`EhbpTransport` and :class:`AsyncEhbpTransport` encrypt every
request body to a pinned server key and decrypt the response as its frames authenticate.

Per request, in order:

1. A request that sets ``Ehbp-Encapsulated-Key`` or ``Ehbp-Response-Nonce`` itself is refused
   (``INVALID_INPUT``).
2. A fresh HPKE sender context is set up to the pinned key; the body is sealed in frames of 64 KiB
   plaintext as the inner transport reads it (streaming bodies too), sent chunked without
   ``Content-Length``. A request without a body still carries one frame sealing the empty string:
   that frame authenticates the encapsulated key, so the response stays confidential (SPEC §7.4's
   advice for bodyless requests) and the server can tell a stale key from no key.
3. The 422 key-configuration problem raises :class:`KeyConfigMismatch`, unless a ``rekey``
   callback was given and the body can be sent again (``content=`` bytes, as the openai SDK sends):
   then the callback supplies a fresh key (for ``ccai.client``: a full re-attestation) and the
   request is sent once more, to the new key.
4. ``Ehbp-Response-Nonce`` repeated or malformed: refused. Absent on a 2xx: refused (a stripped
   header and substituted plaintext must not pass). Absent on another status: the response is
   passed through as an unauthenticated plaintext error (``response.extensions["ccai.ehbp"]`` is
   ``"plaintext"``), as intermediaries produce them.
5. The response body is decrypted frame by frame as it arrives; each frame's plaintext is released
   only once that frame authenticated, so a streamed answer yields each event as it comes.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import cast

import anyio
import httpx

from ccai._json import load_json
from ccai.ehbp._errors import (
    DuplicateResponseNonce,
    InvalidInput,
    InvalidKeyConfig,
    KeyConfigMismatch,
    MissingResponseNonce,
)
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
    KeyConfig,
    RequestSealer,
    ResponseCipher,
    parse_response_nonce,
)
from ccai.errors import Error

__all__ = [
    "AsyncEhbpTransport",
    "AsyncRekey",
    "EhbpTransport",
    "Rekey",
    "fetch_key_config",
    "key_config_from_response",
]

#: Called on the 422 key-configuration problem; returns the verified new key (or raises).
Rekey = Callable[[], bytes | KeyConfig]
#: The async form of :data:`Rekey`.
AsyncRekey = Callable[[], Awaitable[bytes | KeyConfig]]

_RESERVED = (ENCAPSULATED_KEY_HEADER.lower(), RESPONSE_NONCE_HEADER.lower())
# A key-configuration problem document is small; a larger 422 body is something else.
_MAX_PROBLEM_BYTES = 64 * 1024
_EXTENSION = "ccai.ehbp"


def _public_key(key: bytes | KeyConfig) -> bytes:
    config = key if isinstance(key, KeyConfig) else KeyConfig.for_public_key(key)
    config.validate()
    return config.public_key


def key_config_from_response(response: httpx.Response) -> KeyConfig:
    """The key configuration in a read ``GET /.well-known/hpke-keys`` response.

    Raises:
        InvalidKeyConfig: non-2xx, another media type, or unparseable.
        UnsupportedSuite: another KEM, KDF or AEAD.
    """
    if not response.is_success:
        raise InvalidKeyConfig(f"key discovery answered HTTP {response.status_code}")
    media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != KEYS_MEDIA_TYPE:
        raise InvalidKeyConfig(f"key discovery answered {media or 'no media type'}, not {KEYS_MEDIA_TYPE}")
    return KeyConfig.decode(response.content)


def fetch_key_config(
    base_url: str, *, client: httpx.Client | None = None, timeout: float = 10.0
) -> KeyConfig:
    """``GET BASE/.well-known/hpke-keys`` and parse it. The key is not authenticated by this alone:
    trust it only once an attestation binds it (``ccai.client``).

    Raises:
        InvalidKeyConfig: the server's answer is not a key configuration.
        httpx.HTTPError: the request failed.
    """
    url = base_url.rstrip("/") + KEYS_PATH
    if client is not None:
        return key_config_from_response(client.get(url, follow_redirects=False))
    with httpx.Client(timeout=timeout) as own:
        return key_config_from_response(own.get(url, follow_redirects=False))


# -- the sans-I/O parts both transports share -------------------------------------------------


def _check_request(request: httpx.Request) -> None:
    for name in _RESERVED:
        if name in request.headers:
            raise InvalidInput(f"the {name} header is set by the EHBP transport, not by callers")


def _outgoing(
    request: httpx.Request, sealer: RequestSealer, stream: httpx.SyncByteStream | httpx.AsyncByteStream
) -> httpx.Request:
    headers = request.headers.copy()
    headers.pop("content-length", None)
    headers["transfer-encoding"] = "chunked"
    headers[ENCAPSULATED_KEY_HEADER] = sealer.enc.hex()
    return httpx.Request(
        request.method, request.url, headers=headers, stream=stream, extensions=request.extensions
    )


class _BodySealer:
    """Cuts a body arriving in arbitrary pieces into ``frame_size`` frames and seals them."""

    def __init__(self, sealer: RequestSealer, frame_size: int) -> None:
        self._sealer = sealer
        self._size = frame_size
        self._buffer = bytearray()
        self._sent = False

    def push(self, chunk: bytes) -> bytes:
        self._buffer += chunk
        out = []
        while len(self._buffer) >= self._size:
            out.append(self._sealer.seal(bytes(self._buffer[: self._size])))
            del self._buffer[: self._size]
        self._sent = self._sent or bool(out)
        return b"".join(out)

    def finish(self) -> bytes:
        if self._buffer or not self._sent:
            # An empty body still gets one frame: it authenticates the encapsulated key.
            last = self._sealer.seal(bytes(self._buffer))
            self._buffer.clear()
            self._sent = True
            return last
        return b""


class _ResponseDecoder:
    def __init__(self, cipher: ResponseCipher, max_frame_length: int) -> None:
        self._cipher = cipher
        self._reader = FrameReader(max_frame_length)

    def feed(self, data: bytes) -> Iterator[bytes]:
        for ciphertext in self._reader.feed(data):
            yield self._cipher.open(ciphertext)

    def finish(self) -> None:
        self._reader.finish()


def _may_be_key_config_problem(response: httpx.Response) -> bool:
    if response.status_code != 422:  # the common case, decided without a header lookup
        return False
    media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return RESPONSE_NONCE_HEADER not in response.headers and media == PROBLEM_MEDIA_TYPE


def _key_config_problem_title(document: bytes) -> str | None:
    """The problem's title when ``document`` is EHBP's key-configuration problem, else ``None``."""
    try:
        problem = load_json(document, what="problem document", max_depth=8)
    except Error:
        return None
    if not isinstance(problem, dict) or problem.get("type") != KEY_CONFIG_PROBLEM_TYPE:
        return None
    title = problem.get("title")
    return title if isinstance(title, str) and title else "key configuration mismatch"


def _response_nonce(response: httpx.Response) -> bytes | None:
    values = response.headers.get_list(RESPONSE_NONCE_HEADER)
    if not values:
        if response.is_success:
            raise MissingResponseNonce(f"HTTP {response.status_code} without {RESPONSE_NONCE_HEADER}")
        return None  # an unauthenticated plaintext error, typically from an intermediary
    if len(values) > 1:
        raise DuplicateResponseNonce(f"{len(values)} {RESPONSE_NONCE_HEADER} headers")
    return parse_response_nonce(values[0])


def _decrypted(
    response: httpx.Response, stream: httpx.SyncByteStream | httpx.AsyncByteStream
) -> httpx.Response:
    headers = response.headers.copy()
    headers.pop("content-length", None)
    extensions = {**response.extensions, _EXTENSION: "encrypted"}
    return httpx.Response(response.status_code, headers=headers, stream=stream, extensions=extensions)


def _plaintext(
    response: httpx.Response, stream: httpx.SyncByteStream | httpx.AsyncByteStream
) -> httpx.Response:
    extensions = {**response.extensions, _EXTENSION: "plaintext"}
    return httpx.Response(
        response.status_code, headers=response.headers, stream=stream, extensions=extensions
    )


# -- sync ---------------------------------------------------------------------------------------


class _SealingStream(httpx.SyncByteStream):
    def __init__(self, source: httpx.SyncByteStream, body: _BodySealer) -> None:
        self._source = source
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._source:
            sealed = self._body.push(chunk)
            if sealed:
                yield sealed
        yield self._body.finish()


class _OpeningStream(httpx.SyncByteStream):
    def __init__(self, source: httpx.SyncByteStream, decoder: _ResponseDecoder) -> None:
        self._source = source
        self._decoder = decoder

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._source:
            yield from self._decoder.feed(chunk)
        self._decoder.finish()

    def close(self) -> None:
        self._source.close()


class _PrefixedStream(httpx.SyncByteStream):
    def __init__(self, prefix: bytes, rest: Iterator[bytes], source: httpx.SyncByteStream) -> None:
        self._prefix, self._rest, self._source = prefix, rest, source

    def __iter__(self) -> Iterator[bytes]:
        yield self._prefix
        yield from self._rest

    def close(self) -> None:
        self._source.close()


class EhbpTransport(httpx.BaseTransport):
    """An httpx transport that speaks EHBP to one server key.

    Args:
        server_key: The server's X25519 public key (32 bytes) or its :class:`KeyConfig`, obtained
            through a channel that authenticates it (an attestation that binds it).
        inner: The transport that carries the encrypted request (default ``httpx.HTTPTransport()``).
        rekey: Called on the 422 key-configuration problem to obtain the server's new key; the
            request is then sent once more to it. Without it, :class:`KeyConfigMismatch` is raised.
        max_frame_length: Largest response frame accepted (ciphertext bytes).
        frame_size: Plaintext bytes per request frame.
    """

    def __init__(
        self,
        server_key: bytes | KeyConfig,
        *,
        inner: httpx.BaseTransport | None = None,
        rekey: Rekey | None = None,
        max_frame_length: int = MAX_FRAME_LENGTH,
        frame_size: int = FRAME_SIZE,
    ) -> None:
        self._key = _public_key(server_key)
        self._inner = inner if inner is not None else httpx.HTTPTransport()
        self._rekey = rekey
        self._max_frame_length = max_frame_length
        self._frame_size = frame_size
        self._lock = threading.Lock()

    @property
    def public_key(self) -> bytes:
        """The server key requests are encrypted to now."""
        return self._key

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request encrypted; return its response, decrypting as it is read.

        Raises:
            KeyConfigMismatch: the server does not hold the key (after one re-key, if enabled).
            EhbpError: any other protocol failure (see the module docstring).
        """
        _check_request(request)
        key = self._key
        try:
            return self._exchange(request, key)
        except KeyConfigMismatch:
            if self._rekey is None or not isinstance(request.stream, httpx.ByteStream):
                raise
            with self._lock:
                if self._key == key:  # no other request re-keyed meanwhile
                    fresh = _public_key(self._rekey())
                    if fresh == key:
                        raise
                    self._key = fresh
                key = self._key
            return self._exchange(request, key)

    def _exchange(self, request: httpx.Request, key: bytes) -> httpx.Response:
        sealer = RequestSealer(key)
        body = _BodySealer(sealer, self._frame_size)
        stream = _SealingStream(cast(httpx.SyncByteStream, request.stream), body)
        response = self._inner.handle_request(_outgoing(request, sealer, stream))
        source = cast(httpx.SyncByteStream, response.stream)
        try:
            if _may_be_key_config_problem(response):
                chunks = iter(source)
                prefix = b""
                for chunk in chunks:
                    prefix += chunk
                    if len(prefix) > _MAX_PROBLEM_BYTES:
                        return _plaintext(response, _PrefixedStream(prefix, chunks, source))
                source.close()
                title = _key_config_problem_title(prefix)
                if title is not None:
                    raise KeyConfigMismatch(title)
                return _plaintext(response, httpx.ByteStream(prefix))
            nonce = _response_nonce(response)
        except BaseException:
            source.close()
            raise
        if nonce is None:
            return _plaintext(response, source)
        decoder = _ResponseDecoder(sealer.response_cipher(nonce), self._max_frame_length)
        return _decrypted(response, _OpeningStream(source, decoder))

    def close(self) -> None:
        """Close the inner transport."""
        self._inner.close()


# -- async --------------------------------------------------------------------------------------


class _AsyncSealingStream(httpx.AsyncByteStream):
    def __init__(self, source: httpx.AsyncByteStream, body: _BodySealer) -> None:
        self._source = source
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._source:
            sealed = self._body.push(chunk)
            if sealed:
                yield sealed
        yield self._body.finish()


class _AsyncOpeningStream(httpx.AsyncByteStream):
    def __init__(self, source: httpx.AsyncByteStream, decoder: _ResponseDecoder) -> None:
        self._source = source
        self._decoder = decoder

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._source:
            for plaintext in self._decoder.feed(chunk):
                yield plaintext
        self._decoder.finish()

    async def aclose(self) -> None:
        await self._source.aclose()


class _AsyncPrefixedStream(httpx.AsyncByteStream):
    def __init__(self, prefix: bytes, rest: AsyncIterator[bytes], source: httpx.AsyncByteStream) -> None:
        self._prefix, self._rest, self._source = prefix, rest, source

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._prefix
        async for chunk in self._rest:
            yield chunk

    async def aclose(self) -> None:
        await self._source.aclose()


class AsyncEhbpTransport(httpx.AsyncBaseTransport):
    """The asyncio/trio form of :class:`EhbpTransport` (same arguments; ``rekey`` is async)."""

    def __init__(
        self,
        server_key: bytes | KeyConfig,
        *,
        inner: httpx.AsyncBaseTransport | None = None,
        rekey: AsyncRekey | None = None,
        max_frame_length: int = MAX_FRAME_LENGTH,
        frame_size: int = FRAME_SIZE,
    ) -> None:
        self._key = _public_key(server_key)
        self._inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self._rekey = rekey
        self._max_frame_length = max_frame_length
        self._frame_size = frame_size
        self._lock = anyio.Lock()

    @property
    def public_key(self) -> bytes:
        """The server key requests are encrypted to now."""
        return self._key

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request encrypted; return its response, decrypting as it is read.

        Raises:
            KeyConfigMismatch: the server does not hold the key (after one re-key, if enabled).
            EhbpError: any other protocol failure (see the module docstring).
        """
        _check_request(request)
        key = self._key
        try:
            return await self._exchange(request, key)
        except KeyConfigMismatch:
            if self._rekey is None or not isinstance(request.stream, httpx.ByteStream):
                raise
            async with self._lock:
                if self._key == key:
                    fresh = _public_key(await self._rekey())
                    if fresh == key:
                        raise
                    self._key = fresh
                key = self._key
            return await self._exchange(request, key)

    async def _exchange(self, request: httpx.Request, key: bytes) -> httpx.Response:
        sealer = RequestSealer(key)
        body = _BodySealer(sealer, self._frame_size)
        stream = _AsyncSealingStream(cast(httpx.AsyncByteStream, request.stream), body)
        response = await self._inner.handle_async_request(_outgoing(request, sealer, stream))
        source = cast(httpx.AsyncByteStream, response.stream)
        try:
            if _may_be_key_config_problem(response):
                chunks = source.__aiter__()
                prefix = b""
                async for chunk in chunks:
                    prefix += chunk
                    if len(prefix) > _MAX_PROBLEM_BYTES:
                        return _plaintext(response, _AsyncPrefixedStream(prefix, chunks, source))
                await source.aclose()
                title = _key_config_problem_title(prefix)
                if title is not None:
                    raise KeyConfigMismatch(title)
                return _plaintext(response, httpx.ByteStream(prefix))
            nonce = _response_nonce(response)
        except BaseException:
            await source.aclose()
            raise
        if nonce is None:
            return _plaintext(response, source)
        decoder = _ResponseDecoder(sealer.response_cipher(nonce), self._max_frame_length)
        return _decrypted(response, _AsyncOpeningStream(source, decoder))

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()

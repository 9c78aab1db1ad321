"""Every EHBP failure we can provoke, on both sides: the server's answers (400 / 422 / encrypted
400 and 500, never which check failed) and the client's error classes, each with its code."""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable, Iterator

import httpx
import pytest

from ccai.ehbp import (
    KEY_CONFIG_PROBLEM_TYPE,
    AeadDecryptFailed,
    ChunkTooLarge,
    DuplicateResponseNonce,
    EhbpError,
    EhbpTransport,
    FramingTruncated,
    InvalidInput,
    InvalidKeyConfig,
    InvalidResponseNonce,
    KeyConfig,
    KeyConfigMismatch,
    MissingResponseNonce,
    ServerKey,
    UnsupportedSuite,
    key_config_from_response,
)
from ccai.ehbp._protocol import FrameReader
from ccai.errors import Error, UsageError

from .conftest import OracleRequest, OracleServer, Served, frames_of

KEY_CONFIG_PROBLEM = {"type": KEY_CONFIG_PROBLEM_TYPE, "title": "key configuration mismatch", "status": 422}


def _post(served: Served, body: bytes, headers: dict[str, str], path: str = "/echo") -> httpx.Response:
    return httpx.post(served.url + path, content=body, headers=headers)


# -- server side ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["zz" * 32, "ab" * 16, "ab" * 33, "", "0x" + "ab" * 31, "ab " * 31 + "ab"])
def test_malformed_encapsulated_key_is_400(served: Served, value: str) -> None:
    response = _post(served, frames_of(b"x" * 20), {"Ehbp-Encapsulated-Key": value})
    assert response.status_code == 400
    assert response.json()["title"] == "invalid encrypted request"
    assert served.seen.paths == []


def test_repeated_encapsulated_key_is_400(served: Served) -> None:
    request = OracleRequest(served.key.public_key, b"x")
    headers = [("Ehbp-Encapsulated-Key", request.enc.hex()), ("Ehbp-Encapsulated-Key", request.enc.hex())]
    response = httpx.post(served.url + "/echo", content=request.body, headers=headers)
    assert response.status_code == 400 and served.seen.paths == []


def _key_config_answer(response: httpx.Response) -> None:
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == KEY_CONFIG_PROBLEM
    assert "ehbp-response-nonce" not in response.headers


def test_stale_key_low_order_enc_and_tampered_first_frame_look_the_same(served: Served) -> None:
    stale = OracleRequest(ServerKey.generate().public_key, b"hello")
    _key_config_answer(_post(served, stale.body, stale.headers))
    # A low-order point fails decapsulation; the answer must not differ from a stale key's.
    good = OracleRequest(served.key.public_key, b"hello")
    _key_config_answer(_post(served, good.body, {"Ehbp-Encapsulated-Key": "00" * 32}))
    tampered = bytearray(good.body)
    tampered[-1] ^= 1
    _key_config_answer(_post(served, bytes(tampered), good.headers))
    assert served.seen.paths == []


def test_tampered_later_frame_fails_closed_with_an_encrypted_400(served: Served) -> None:
    request = OracleRequest(served.key.public_key, b'{"a":', b'"tampered"}')
    ciphertexts = list(request.ciphertexts)
    ciphertexts[1] = ciphertexts[1][:-1] + bytes([ciphertexts[1][-1] ^ 1])
    response = _post(served, frames_of(*ciphertexts), request.headers)
    assert response.status_code == 400
    assert request.open_response(response.headers["ehbp-response-nonce"], response.content).startswith(
        b'{"type"'
    )
    assert served.seen.bodies == []  # the application never got the body


def test_reordered_frames_fail(served: Served) -> None:
    request = OracleRequest(served.key.public_key, b"first", b"second", b"third")
    c = request.ciphertexts
    response = _post(served, frames_of(c[0], c[2], c[1]), request.headers)
    assert response.status_code == 400 and served.seen.bodies == []


@pytest.mark.parametrize("cut", [1, 3, 10])
def test_truncated_body_is_400(served: Served, cut: int) -> None:
    request = OracleRequest(served.key.public_key, b"hello world")
    response = _post(served, request.body[:-cut], request.headers)
    assert response.status_code == 400 and served.seen.paths == []


def test_truncated_after_the_first_frame_is_400(served: Served) -> None:
    request = OracleRequest(served.key.public_key, b"one", b"two")
    response = _post(served, request.body[:-2], request.headers)
    assert response.status_code == 400 and served.seen.bodies == []


def test_frame_over_the_limit_is_refused(served: Served) -> None:
    request = OracleRequest(served.key.public_key, b"x")
    response = _post(served, struct.pack(">I", 0xFFFFFFFF) + b"\x00" * 64, request.headers)
    assert response.status_code == 400 and served.seen.paths == []


def test_frame_reader_refuses_a_large_prefix_before_buffering() -> None:
    reader = FrameReader(max_frame_length=1024)
    assert list(reader.feed(struct.pack(">I", 1024)[:3])) == []
    with pytest.raises(ChunkTooLarge) as raised:
        list(reader.feed(b"\x01"))  # only the fourth prefix byte arrived: 0x00000401 > 1024
    assert raised.value.code == "CHUNK_TOO_LARGE"
    exact = FrameReader(max_frame_length=4)
    assert list(exact.feed(struct.pack(">I", 4) + b"abcd" + struct.pack(">I", 0) + struct.pack(">I", 1))) == [
        b"abcd"
    ]
    with pytest.raises(FramingTruncated):
        exact.finish()


def test_header_without_frames_is_400(served: Served) -> None:
    request = OracleRequest(served.key.public_key)
    response = _post(served, frames_of(b"", b""), request.headers)
    assert response.status_code == 400 and served.seen.paths == []


def test_zero_length_frames_are_skipped(served: Served) -> None:
    request = OracleRequest(served.key.public_key, b"abc", b"def")
    c = request.ciphertexts
    body = frames_of(*([b""] * 1000), c[0], b"", c[1], b"")
    response = _post(served, body, request.headers, path="/raw")
    assert response.status_code == 200
    assert request.open_response(response.headers["ehbp-response-nonce"], response.content) == b"abcdef"


def test_application_error_is_an_encrypted_500(served: Served) -> None:
    with httpx.Client(base_url=served.url, transport=EhbpTransport(served.key.public_key)) as client:
        response = client.post("/boom", content=b"{}")
    assert response.status_code == 500 and response.extensions["ccai.ehbp"] == "encrypted"


def test_rotation_gives_stale_clients_422_and_the_transport_an_error(served: Served) -> None:
    transport = EhbpTransport(served.key.public_key)
    with httpx.Client(base_url=served.url, transport=transport) as client:
        assert client.post("/echo", content=b"before").status_code == 200
        new = ServerKey.generate()
        served.middleware.rotate(new)
        with pytest.raises(KeyConfigMismatch) as raised:
            client.post("/echo", content=b"after")
        assert raised.value.code == "KEY_CONFIG_MISMATCH"
        assert str(raised.value) == "KEY_CONFIG_MISMATCH: key configuration mismatch"
        assert isinstance(raised.value, EhbpError) and isinstance(raised.value, Error)
    assert served.seen.bodies == [b"before"]
    # With a rekey callback the request is sent once more, to the new key.
    fetched: list[bytes] = []

    def rekey() -> bytes:
        fetched.append(new.public_key)
        return new.public_key

    rekeyed = EhbpTransport(ServerKey.generate().public_key, rekey=rekey)
    with httpx.Client(base_url=served.url, transport=rekeyed) as client:
        assert client.post("/echo", content=b"retried").status_code == 200
        assert client.post("/echo", content=b"again").status_code == 200
    assert fetched == [new.public_key] and rekeyed.public_key == new.public_key
    assert served.seen.bodies[-2:] == [b"retried", b"again"]


def test_rekey_to_the_same_key_or_a_streamed_body_does_not_retry(served: Served) -> None:
    stale = ServerKey.generate().public_key
    calls: list[int] = []

    def same() -> bytes:
        calls.append(1)
        return stale

    with httpx.Client(base_url=served.url, transport=EhbpTransport(stale, rekey=same)) as client:
        with pytest.raises(KeyConfigMismatch):
            client.post("/echo", content=b"x")

        def body() -> Iterator[bytes]:
            yield b"streamed"

        with pytest.raises(KeyConfigMismatch):
            client.post("/echo", content=body())
    assert calls == [1]  # the streamed body cannot be sent twice: no re-key attempted


# -- client side, against a misbehaving server ---------------------------------------------------


def _transport(
    oracle: OracleServer, answer: Callable[[httpx.Request, bytes, object, str], httpx.Response]
) -> EhbpTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        enc = request.headers["ehbp-encapsulated-key"]
        plaintext, ctx = oracle.open_request(enc, request.read())
        return answer(request, plaintext, ctx, enc)

    return EhbpTransport(oracle.key.public_key, inner=httpx.MockTransport(handler))


def _sealed(
    ctx: object,
    enc: str,
    *chunks: bytes,
    status: int = 200,
    nonce: str | None = None,
    extra: list[tuple[str, str]] | None = None,
) -> httpx.Response:
    raw_nonce = secrets.token_bytes(32)
    body = OracleServer.seal_response(ctx, enc, raw_nonce, *chunks)
    headers = [("Ehbp-Response-Nonce", nonce if nonce is not None else raw_nonce.hex())] + (extra or [])
    return httpx.Response(status, headers=headers, content=body)


def _get(transport: EhbpTransport, body: bytes = b"{}") -> httpx.Response:
    with httpx.Client(transport=transport) as client:
        return client.post("http://ehbp.test/x", content=body)


def test_client_decrypts_the_oracle_server() -> None:
    oracle = OracleServer()
    response = _get(_transport(oracle, lambda r, p, ctx, enc: _sealed(ctx, enc, b"echo:", p)), b"ping")
    assert response.content == b"echo:ping"


def test_missing_nonce_on_2xx_fails_and_on_error_passes_through() -> None:
    oracle = OracleServer()
    with pytest.raises(MissingResponseNonce):
        _get(_transport(oracle, lambda r, p, ctx, enc: httpx.Response(200, content=b"substituted")))
    passed = _get(_transport(oracle, lambda r, p, ctx, enc: httpx.Response(502, content=b"bad gateway")))
    assert passed.status_code == 502 and passed.content == b"bad gateway"
    assert passed.extensions["ccai.ehbp"] == "plaintext"


@pytest.mark.parametrize("nonce", ["zz" * 32, "00" * 16, "00" * 33, "0" * 63])
def test_invalid_nonce(nonce: str) -> None:
    oracle = OracleServer()
    with pytest.raises(InvalidResponseNonce):
        _get(_transport(oracle, lambda r, p, ctx, enc: _sealed(ctx, enc, b"x", nonce=nonce)))


def test_duplicate_nonce() -> None:
    oracle = OracleServer()
    extra = [("Ehbp-Response-Nonce", "00" * 32)]
    with pytest.raises(DuplicateResponseNonce):
        _get(_transport(oracle, lambda r, p, ctx, enc: _sealed(ctx, enc, b"x", extra=extra)))


def _mutated(
    mutate: Callable[[bytes], bytes],
) -> Callable[[httpx.Request, bytes, object, str], httpx.Response]:
    def answer(request: httpx.Request, plaintext: bytes, ctx: object, enc: str) -> httpx.Response:
        good = _sealed(ctx, enc, b"first frame", b"second frame")
        return httpx.Response(200, headers=good.headers, content=mutate(good.content))

    return answer


BOTH = b"first frame" + b"second frame"


@pytest.mark.parametrize(
    ("mutate", "error", "released"),
    [
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), AeadDecryptFailed, b"first frame"),
        (lambda b: b[:-3], FramingTruncated, b"first frame"),
        (lambda b: b + b"\x00\x00", FramingTruncated, BOTH),
        (lambda b: b + struct.pack(">I", 0xFFFFFFFF), ChunkTooLarge, BOTH),
        (lambda b: b + struct.pack(">I", 15) + b"\x00" * 15, AeadDecryptFailed, BOTH),
    ],
)
def test_bad_response_bodies(
    mutate: Callable[[bytes], bytes], error: type[EhbpError], released: bytes
) -> None:
    oracle = OracleServer()
    received: list[bytes] = []
    client = httpx.Client(transport=_transport(oracle, _mutated(mutate)))
    with pytest.raises(error), client.stream("POST", "http://ehbp.test/x", content=b"{}") as response:
        received.extend(response.iter_bytes())
    # Frames that authenticated before the failure were released; nothing after it.
    assert b"".join(received) == released


def test_frames_from_another_response_fail() -> None:
    oracle = OracleServer()
    other: dict[str, httpx.Response] = {}

    def answer(request: httpx.Request, plaintext: bytes, ctx: object, enc: str) -> httpx.Response:
        mine = _sealed(ctx, enc, b"mine")
        if "first" not in other:
            other["first"] = mine
            return mine
        return httpx.Response(200, headers=mine.headers, content=other["first"].content)

    transport = _transport(oracle, answer)
    assert _get(transport).content == b"mine"
    with pytest.raises(AeadDecryptFailed):
        _get(transport)


def test_key_config_problem_of_another_kind_passes_through() -> None:
    oracle = OracleServer()
    problem = httpx.Response(
        422,
        json={"type": "about:blank", "title": "other"},
        headers={"content-type": "application/problem+json"},
    )
    response = _get(_transport(oracle, lambda r, p, ctx, enc: problem))
    assert response.status_code == 422 and response.json()["title"] == "other"


def test_reserved_headers_are_refused() -> None:
    oracle = OracleServer()
    with (
        pytest.raises(InvalidInput) as raised,
        httpx.Client(transport=_transport(oracle, _mutated(lambda b: b))) as client,
    ):
        client.post("http://ehbp.test/x", content=b"{}", headers={"Ehbp-Encapsulated-Key": "00" * 32})
    assert isinstance(raised.value, UsageError) and raised.value.code == "INVALID_INPUT"


# -- key configurations -------------------------------------------------------------------------


def test_key_config_decoding_errors() -> None:
    good = ServerKey.generate().key_config().encode()
    assert len(good) == 41
    assert KeyConfig.decode(good + b"ignored trailing config").encode() == good
    for data in (b"", good[:2], good[:20], good[:36], good[:40]):
        with pytest.raises(InvalidKeyConfig):
            KeyConfig.decode(data)
    with pytest.raises(UnsupportedSuite):
        KeyConfig.decode(good[:1] + b"\x00\x21" + good[3:])  # X448
    with pytest.raises(UnsupportedSuite):
        KeyConfig.decode(good[:-2] + b"\x00\x03")  # ChaCha20-Poly1305
    with pytest.raises(InvalidKeyConfig):
        KeyConfig.decode(good[:35] + b"\x00\x03" + good[37:])  # suite length not a multiple of 4
    with pytest.raises(InvalidKeyConfig):
        KeyConfig.decode(good[:35] + b"\x00\x00")  # no suites
    with pytest.raises(InvalidKeyConfig):
        key_config_from_response(httpx.Response(200, content=good, headers={"content-type": "text/plain"}))
    with pytest.raises(InvalidKeyConfig):
        key_config_from_response(
            httpx.Response(500, content=good, headers={"content-type": "application/ohttp-keys"})
        )
    with pytest.raises(InvalidKeyConfig):
        ServerKey.from_private_bytes(b"short")


def test_server_key_repr_has_no_secret() -> None:
    key = ServerKey.generate()
    assert key.private_bytes().hex() not in repr(key) and key.public_key.hex() in repr(key)
    assert ServerKey.from_private_bytes(key.private_bytes()).public_key == key.public_key

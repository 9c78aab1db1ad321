"""Regression: collateral HTTP requests are bounded in size and in total time.

A 1 GiB answer once drove ``ccai collateral fetch`` to 4.3 GB of memory, and a server trickling one
byte every 5 s was still being read after 120 s (httpx's timeouts apply per read). Each test runs a
real loopback server that misbehaves in one way and checks that the client gives up with
``CollateralUnavailable`` — in time, with a one-line message that names the URL and the limit.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ccai.collateral import (
    DEADLINE_ENV,
    MAX_BYTES_ENV,
    AmdKdsClient,
    HttpLimits,
    RimServiceClient,
)
from ccai.collateral._http import DEFAULT_TIMEOUT
from ccai.errors import CollateralUnavailable, UsageError
from ccai.evidence import SnpProduct

RIM_ID = "NV_GPU_DRIVER_GH100_550.144.03"
BIG = 64 << 20
SMALL_CAP = 1 << 20
# Generous: the deadline plus one read timeout, plus slack for a loaded test machine.
DEADLINE = 2.0
BOUND = DEADLINE + DEFAULT_TIMEOUT + 5

Handler = Callable[[socket.socket, str, threading.Event], None]


def _read_head(conn: socket.socket) -> str:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(4096)
        if not piece:
            break
        data += piece
    return data.decode("latin-1")


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], str]]:
    """Start a raw loopback HTTP server whose connections ``handler`` answers byte by byte."""
    stop = threading.Event()
    listeners: list[socket.socket] = []

    def start(handler: Handler) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def answer(conn: socket.socket) -> None:
            with conn, contextlib.suppress(OSError):  # the client hung up, as it should
                handler(conn, _read_head(conn), stop)

        def accept() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=answer, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    stop.set()
    for listener in listeners:
        listener.close()


def _big_body(conn: socket.socket, head: str, stop: threading.Event) -> None:
    """64 MiB without Content-Length (the body ends when the connection closes)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
    block = b"x" * (1 << 20)
    for _ in range(BIG // len(block)):
        if stop.is_set():
            return
        conn.sendall(block)


def _trickle_body(conn: socket.socket, head: str, stop: threading.Event) -> None:
    """A small announced body, one byte every 0.5 s."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    for _ in range(100):
        if stop.wait(0.5):
            return
        conn.sendall(b"x")


def _trickle_head(conn: socket.socket, head: str, stop: threading.Event) -> None:
    """The status line and headers, one byte every 0.5 s: the client has no body to check yet."""
    for byte in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"p" * 100:
        if stop.wait(0.5):
            return
        conn.sendall(bytes([byte]))


def _huge_content_length(conn: socket.socket, head: str, stop: threading.Event) -> None:
    """Announces 1 GiB, then sends nothing: the announcement alone must be refused."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")
    stop.wait(30)


def _gzip_bomb(conn: socket.socket, head: str, stop: threading.Event) -> None:
    """A truthful but small Content-Length whose gzip body decodes to 8 MiB."""
    body = gzip.compress(bytes(8 * SMALL_CAP), compresslevel=9)
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )


def _assert_one_line(error: CollateralUnavailable, url: str, limit: str) -> None:
    assert "\n" not in error.message
    assert url in error.message
    assert limit in error.message


def test_a_large_answer_is_refused_while_streaming(serve: Callable[[Handler], str]) -> None:
    url = serve(_big_body)
    client = RimServiceClient(url, limits=HttpLimits(max_bytes=SMALL_CAP))
    start = time.monotonic()
    with pytest.raises(CollateralUnavailable) as caught:
        client.rim(RIM_ID)
    assert time.monotonic() - start < BOUND
    _assert_one_line(caught.value, url, f"{SMALL_CAP}-byte limit")
    assert MAX_BYTES_ENV in (caught.value.hint or "")


def test_a_large_answer_is_refused_on_the_get_path(serve: Callable[[Handler], str]) -> None:
    url = serve(_big_body)
    client = AmdKdsClient(url, limits=HttpLimits(max_bytes=SMALL_CAP))
    with pytest.raises(CollateralUnavailable, match="byte limit") as caught:
        client.crl(SnpProduct.MILAN)
    assert caught.value.step == "collateral"


@pytest.mark.parametrize("handler", [_trickle_body, _trickle_head], ids=["body", "headers"])
def test_a_trickling_server_cannot_extend_the_deadline(
    serve: Callable[[Handler], str], handler: Handler
) -> None:
    url = serve(handler)
    client = RimServiceClient(url, limits=HttpLimits(deadline=DEADLINE))
    start = time.monotonic()
    with pytest.raises(CollateralUnavailable) as caught:
        client.rim(RIM_ID)
    assert time.monotonic() - start < BOUND
    _assert_one_line(caught.value, url, "2 s deadline")
    assert DEADLINE_ENV in (caught.value.hint or "")


def test_a_content_length_over_the_cap_is_refused_before_the_body(
    serve: Callable[[Handler], str],
) -> None:
    url = serve(_huge_content_length)
    client = RimServiceClient(url, limits=HttpLimits(max_bytes=SMALL_CAP, deadline=60))
    start = time.monotonic()
    with pytest.raises(CollateralUnavailable, match="byte limit"):
        client.rim(RIM_ID)
    # The server never sends the body; waiting for it would take the read timeout or longer.
    assert time.monotonic() - start < DEFAULT_TIMEOUT


def test_a_compressed_answer_is_counted_after_decoding(serve: Callable[[Handler], str]) -> None:
    url = serve(_gzip_bomb)
    client = RimServiceClient(url, limits=HttpLimits(max_bytes=SMALL_CAP))
    with pytest.raises(CollateralUnavailable, match="byte limit"):
        client.rim(RIM_ID)


def test_redirects_are_followed_without_reading_the_redirect_body(
    serve: Callable[[Handler], str],
) -> None:
    target = serve(lambda conn, head, stop: conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ncrl"))

    def redirect(conn: socket.socket, head: str, stop: threading.Event) -> None:
        conn.sendall(
            b"HTTP/1.1 302 Found\r\nLocation: " + target.encode() + b"/crl\r\nConnection: close\r\n\r\n"
        )
        _big_body_only(conn, stop)

    url = serve(redirect)
    client = AmdKdsClient(url, limits=HttpLimits(max_bytes=SMALL_CAP))
    assert client.crl(SnpProduct.MILAN) == b"crl"


def _big_body_only(conn: socket.socket, stop: threading.Event) -> None:
    block = b"r" * (1 << 20)
    for _ in range(BIG // len(block)):
        if stop.is_set():
            return
        conn.sendall(block)


def test_limits_from_the_environment() -> None:
    assert HttpLimits.from_env({}) == HttpLimits()
    assert HttpLimits.from_env({MAX_BYTES_ENV: "64M", DEADLINE_ENV: "2.5"}) == HttpLimits(
        max_bytes=64 << 20, deadline=2.5
    )
    assert HttpLimits.from_env({MAX_BYTES_ENV: "4096", DEADLINE_ENV: ""}).max_bytes == 4096
    for bad in ({MAX_BYTES_ENV: "lots"}, {MAX_BYTES_ENV: "0"}, {DEADLINE_ENV: "soon"}, {DEADLINE_ENV: "-1"}):
        with pytest.raises(UsageError):
            HttpLimits.from_env(bad)


def test_collateral_fetch_over_the_limit_exits_3(serve: Callable[[Handler], str], tmp_path: Path) -> None:
    from ccai.evidence import GpuEvidence, dump_evidence_json
    from ccai.virtual import VirtualGpuBackend

    backend = VirtualGpuBackend.create()
    nonce = secrets.token_bytes(32)
    item = GpuEvidence(
        arch="HOPPER",
        nonce=nonce,
        report=backend.attestation_report(0, nonce),
        certificate_chain=backend.certificate_chain(0),
    )
    evidence = tmp_path / "evidence.json"
    evidence.write_bytes(dump_evidence_json([item]))
    url = serve(_big_body)
    output = tmp_path / "bundle.json"
    argv = [
        "collateral",
        "fetch",
        str(evidence),
        "-o",
        str(output),
        "--rim-service-url",
        url,
        "--ocsp-url",
        url,
    ]
    result = subprocess.run(
        [sys.executable, "-m", "ccai.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, MAX_BYTES_ENV: "64K"},
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "65536-byte limit" in result.stderr
    assert not output.exists()


def test_importing_the_verifier_and_collateral_does_not_load_httpx() -> None:
    code = "import sys, ccai.verify, ccai.collateral; print('httpx' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"

"""The moving parts of ``ccai demo``: loopback services, gateway processes and a key-swapping relay.

* :func:`serve_in_thread` runs the key broker or the attestation service (FastAPI apps whose
  lifespan opens their SQLite database) under uvicorn in a daemon thread, their JSON logs going to
  a file instead of the demo's terminal.
* :class:`GatewayProcess` runs ``ccai serve gateway … --json`` as a real process and turns its JSON
  log lines (stderr) into events the demo waits on — ``listening``, each ``boot_state``,
  ``key_released``, ``ready``, ``boot_failed``, ``hpke_key_rotated`` — while copying them to a log file.
* :class:`KeySwappingRelay` is an attacker on the path to the gateway: it forwards everything but
  answers ``/.well-known/hpke-keys`` with its own key and, when asked, rewrites the key bound in
  the attestation document, hoping the client encrypts the prompt to it. It counts what reached it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ccai.errors import UsageError

__all__ = ["GatewayProcess", "KeySwappingRelay", "log_to_file", "serve_in_thread"]


def log_to_file(logger_name: str, path: Path) -> None:
    """Send ``logger_name``'s records to ``path`` only (keeping the format of its own handler)."""
    logger = logging.getLogger(logger_name)
    formatter: logging.Formatter | None = next((h.formatter for h in logger.handlers if h.formatter), None)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(formatter or logging.Formatter("%(message)s"))
    logger.addHandler(file_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` (lifespan on) on a free loopback port in a daemon thread; yields its base URL."""
    from ccai.virtual import run_in_background

    with run_in_background(app, lifespan="on") as url:
        yield url


class GatewayProcess:
    """``ccai serve gateway ARGS --port 0 --json`` as a child process with ``CCAI_HOME=home``.

    Args:
        args: The gateway's options.
        home: Its ``$CCAI_HOME`` (the virtual VM's state).
        log: Where its stderr (JSON log lines) is copied.
    """

    def __init__(self, args: list[str], *, home: Path, log: Path) -> None:
        env = dict(os.environ)
        env["CCAI_HOME"] = str(home)
        # One torch thread: on a small machine the engine's spinning threads starve the event loop.
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        argv = [sys.executable, "-m", "ccai.cli", "serve", "gateway", *args, "--port", "0", "--json"]
        self.log = log
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stdout = ""
        self.url: str | None = None
        self.process = subprocess.Popen(  # noqa: S603 - our own CLI, arguments built here
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._log_file = log.open("w", encoding="utf-8")
        assert self.process.stderr is not None and self.process.stdout is not None
        self._readers = [
            threading.Thread(target=self._read_log, args=(self.process.stderr,), daemon=True),
            threading.Thread(target=self._read_stdout, args=(self.process.stdout,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_log(self, stream: IO[str]) -> None:
        for line in stream:
            self._log_file.write(line)
            self._log_file.flush()
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and "event" in event:
                if event["event"] == "listening":
                    self.url = f"http://127.0.0.1:{event['port']}"
                self.events.put(event)
        self.events.put({"event": "exited"})

    def _read_stdout(self, stream: IO[str]) -> None:
        self.stdout = stream.read()

    def next_event(self, timeout: float) -> dict[str, Any]:
        """The next log event (``{"event": "exited"}`` once the process closed its stderr).

        Raises:
            UsageError: nothing happened within ``timeout`` seconds.
        """
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise UsageError(f"the gateway said nothing for {timeout:.0f} s (log: {self.log})") from None

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end (killed after ``timeout``); returns its exit code."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def result(self) -> dict[str, Any]:
        """The JSON document the gateway printed on stdout (``{}`` when none)."""
        try:
            doc = json.loads(self.stdout)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

    def stop(self) -> int:
        """SIGTERM, then wait (SIGKILL after 20 s); returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        code = self.wait_exit(20)
        self._log_file.close()
        return code


class KeySwappingRelay:
    """An ASGI app between a client and the gateway that tries to get the prompt encrypted to its key.

    It forwards every request to ``upstream`` except ``/.well-known/hpke-keys``, which it answers with
    its own key; with ``rewrite_document`` it also replaces the key bound in the attestation
    document by its own (the CPU report still commits to the gateway's key).

    Args:
        upstream: The gateway's base URL.
        rewrite_document: Rewrite ``keys.hpke_public_key`` in the attestation document too.
    """

    def __init__(self, upstream: str, *, rewrite_document: bool) -> None:
        from ccai.ehbp import ServerKey

        self.upstream = upstream.rstrip("/")
        self.rewrite_document = rewrite_document
        self.key = ServerKey.generate()
        #: Requests that reached the relay, by path.
        self.seen: Counter[str] = Counter()
        #: The last attestation document the relay handed on (after any rewrite).
        self.document: bytes | None = None

    @property
    def prompts_received(self) -> int:
        """Requests to the inference API (``/v1/…``) that reached the relay."""
        return sum(n for path, n in self.seen.items() if path.startswith("/v1/"))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        import httpx

        from ccai.ehbp import KEYS_MEDIA_TYPE, KEYS_PATH

        if scope["type"] != "http":
            return
        path = scope["path"]
        self.seen[path] += 1
        if path == KEYS_PATH:
            await _answer(send, 200, self.key.key_config().encode(), KEYS_MEDIA_TYPE)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope.get("query_string", b"").decode("latin-1")
        url = self.upstream + path + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"host", b"content-length")]
        async with httpx.AsyncClient(timeout=120) as http:
            response = await http.request(scope["method"], url, headers=headers, content=body)
        content = response.content
        if path == "/.well-known/ccai/attestation" and response.status_code == 200:
            if self.rewrite_document:
                doc = json.loads(content)
                doc["keys"]["hpke_public_key"] = base64.b64encode(self.key.public_key).decode()
                content = json.dumps(doc).encode()
            self.document = content
        await _answer(send, response.status_code, content, response.headers.get("content-type", ""))


async def _answer(send: Any, status: int, body: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    """Poll ``predicate()`` until true.

    Raises:
        UsageError: not true within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise UsageError(f"timed out waiting for {what}")
        time.sleep(0.02)

"""``ccai dev engine --engine inprocess`` serves the embedded model on a loopback port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tests.service.conftest import free_port

from ccai.openai_protocol import chat_completion_request

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.torch
@pytest.mark.extra("service")
def test_dev_engine_inprocess_serves_the_embedded_model() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    argv = [
        sys.executable,
        "-m",
        "ccai.cli",
        "dev",
        "engine",
        "--engine",
        "inprocess",
        "--port",
        str(port),
        "--json",
    ]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # the JSON document is printed once the model is loaded
            lines.append(line)
            if line.startswith("}"):
                break
        info = json.loads("".join(lines))
        assert info["url"] == f"http://127.0.0.1:{port}" and info["settings"]["torch_threads"] == 1
        body = chat_completion_request(
            model=info["model"], messages=[{"role": "user", "content": "What is 2+2?"}], max_tokens=12
        )
        doc = httpx.post(f"{info['url']}/v1/chat/completions", json=body, timeout=60).json()
        assert "4" in doc["choices"][0]["message"]["content"] and doc["usage"]["completion_tokens"] == 12
    finally:
        proc.terminate()
        proc.wait(timeout=20)

"""Wire compatibility: Tinfoil's own client (``tinfoil-ehbp`` 0.4.1, ``ehbp.Client.discover``) talks
to our middleware, non-streaming and streaming, and gets the 422 key-configuration problem as its
``KeyConfigMismatchError`` when it encrypts to a stale key."""

from __future__ import annotations

import hashlib
import json

import pytest

from .conftest import Served
from .tinfoil import TINFOIL_EHBP_VERSION, run_tinfoil_client, tinfoil_python


@pytest.mark.slow
def test_tinfoil_client_against_our_middleware(served: Served, request: pytest.FixtureRequest) -> None:
    python = tinfoil_python(request.config)
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    report = run_tinfoil_client(python, served.url, "/echo", body, "/stream", {"n": 3})
    assert report["version"] == TINFOIL_EHBP_VERSION
    assert report["public_key"] == served.key.public_key.hex()
    assert report["status"] == 200 and len(report["nonce"]) == 64
    sent = json.dumps(body).encode()  # what ehbp.Client serialises json_body to
    assert json.loads(report["body"])["sha256"] == hashlib.sha256(sent).hexdigest()
    assert served.seen.bodies[0] == sent and served.seen.encrypted[0] is True
    assert report["stream_status"] == 200 and len(report["stream_nonce"]) == 64
    assert (
        "".join(report["chunks"]) == "".join(f'data: {{"i": {i}}}\n\n' for i in range(3)) + "data: [DONE]\n\n"
    )
    assert len(report["chunks"]) == 4  # decrypted as each event's frame arrived
    assert report["stale_key"] is not None and "KEY_CONFIG_MISMATCH" in report["stale_key"].upper()

"""Runs inside a separate venv holding Tinfoil's ``tinfoil-ehbp`` (never imported by pytest).

Usage: ``python tinfoil_client.py URL JSON_PATH JSON_BODY STREAM_PATH STREAM_BODY``. Discovers the key
with ``ehbp.Client.discover(URL)``, POSTs ``JSON_BODY`` to ``JSON_PATH`` (one response) and
``STREAM_BODY`` to ``STREAM_PATH`` (streamed), and prints one JSON document with what it decrypted.
"""

import json
import sys

import ehbp

url, json_path, json_body, stream_path, stream_body = sys.argv[1:6]
client = ehbp.Client.discover(url)
plain = client.post(json_path, json_body=json.loads(json_body))
chunks = []
with client.stream("POST", stream_path, json_body=json.loads(stream_body)) as streamed:
    stream_status = streamed.status_code
    nonce = streamed.headers.get("ehbp-response-nonce")
    for chunk in streamed.iter_bytes():
        chunks.append(chunk.decode())
refused = None
try:
    stale = ehbp.Client.with_public_key_hex(url, "11" * 32)
    stale.post(json_path, json_body=json.loads(json_body))
except ehbp.KeyConfigMismatchError as exc:
    refused = ehbp.code_of(exc).name if hasattr(ehbp.code_of(exc), "name") else str(ehbp.code_of(exc))
print(
    json.dumps(
        {
            "version": ehbp.__version__,
            "public_key": client.server_identity.public_key_hex(),
            "status": plain.status_code,
            "nonce": plain.headers.get("ehbp-response-nonce"),
            "body": plain.text(),
            "stream_status": stream_status,
            "stream_nonce": nonce,
            "chunks": chunks,
            "stale_key": refused,
        }
    )
)

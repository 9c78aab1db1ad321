"""EHBP arms of the serving sweep against the real gateway (``ccai serve gateway --upstream-cmd`` on the
virtual TDX VM with a virtual H100, in front of upstream_words.py): the gateway is attested before
anything is sent, every request crosses the wire encrypted (a recording TCP relay sees no prompt,
the engine behind the gateway sees them all), the manifest records the arm as EHBP with its
attestation, a gateway that fails verification ends the command with exit 1 before any prompt, and
the arm re-attests once when the gateway's key changes (the client tests' stand-in gateway)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("openai", reason="needs the [gateway] extra: pip install 'ccai[gateway]'")
pytest.importorskip("fastapi", reason="needs the [service] extra: pip install 'ccai[service]'")

from tests.client.conftest import FakeGateway, gateway  # noqa: F401  (the stand-in gateway fixture)
from tests.gateway.conftest import Gateway, running_gateway, tiny_sealed  # noqa: F401
from tests.service.conftest import subprocess_env

from ccai.bench import (
    EhbpArm,
    Endpoint,
    GatewayTrust,
    IoLength,
    Prompt,
    SweepConfig,
    run_sweep,
    send_request,
)
from ccai.sealed import Kek
from ccai.virtual import virtual_trust_anchors

pytestmark = [pytest.mark.slow, pytest.mark.extra("gateway")]

UPSTREAM = Path(__file__).resolve().parent / "upstream_words.py"
CHECK_PROMPT = b"capital of France"


@pytest.fixture
def words_gateway(ccai_home: Path, tiny_sealed: tuple[Path, Path, Kek]) -> Iterator[Gateway]:  # noqa: F811
    """The gateway (EHBP required: no --allow-plaintext) in front of upstream_words.py."""
    sealed, kek_file, _ = tiny_sealed
    args = [
        "--model", str(sealed), "--kek", str(kek_file), "--simulate", "tdx", "--gpus", "1",
        "--upstream-cmd", f"{sys.executable} {UPSTREAM} {{model_dir}} {{port}}",
    ]  # fmt: skip
    with running_gateway(ccai_home, *args) as gw:
        yield gw


def _trust(home: Path) -> GatewayTrust:
    return GatewayTrust(anchors=virtual_trust_anchors(home, gpu=True, tdx=True), allow_simulated=True)


async def _seen(gw: Gateway) -> list[str]:
    """The prompts the engine behind the gateway received (asked through an attested, encrypted client)."""
    arm = await EhbpArm.attest(gw.url, _trust(gw.home))
    async with arm.client(connections=1, timeout=30) as http:
        response = await http.get(gw.url + "/seen")
    assert response.status_code == 200 and response.extensions["ccai.ehbp"] == "encrypted"
    return list(response.json())


class Relay:
    """A TCP relay on loopback that records every byte the client sends."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.upstream_bytes = bytearray()
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bool) -> None:
        try:
            while data := await reader.read(65536):
                if record:
                    self.upstream_bytes += data
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        pipes = [self._pipe(reader, up_writer, True), self._pipe(up_reader, writer, False)]
        await asyncio.gather(*(asyncio.create_task(p) for p in pipes))

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def __enter__(self) -> Relay:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        async def stop() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


async def test_ehbp_sweep_is_encrypted_on_the_wire(words_gateway: Gateway) -> None:
    gw = words_gateway
    # The gateway refuses plaintext: a sweep that completes did not send any.
    plain = httpx.post(gw.url + "/v1/completions", json={"model": "words", "prompt": "hi", "max_tokens": 2})
    assert plain.status_code >= 400 and "choices" not in plain.text

    port = int(gw.url.rsplit(":", 1)[1])
    attested: list[str] = []
    with Relay(port) as relay:
        config = SweepConfig(
            url=relay.url,
            model="words",
            baseline_url=relay.url,
            concurrencies=(1, 2),
            ios=(IoLength(input_len=8, output_len=4),),
            repeats=1,
            num_prompts=2,
            warmup_requests=1,
            prompt_ids=True,
            vocab_size=500,
            check_prompts=1,
            check_tokens=3,
            timeout=30,
            ehbp=True,
            baseline_ehbp=True,
        )
        result = await run_sweep(
            config, trust=_trust(gw.home), on_attested=lambda arm, _: attested.append(arm)
        )
        wire = bytes(relay.upstream_bytes)
    assert attested == ["A", "B"]
    assert set(result.attestations) == {"A", "B"} and result.reattestations == {"A": 0, "B": 0}
    assert result.attestations["A"].simulated
    assert result.output_controls == {"A": "ignore_eos", "B": "ignore_eos"}
    assert result.check is not None and result.check.ok and result.check.outputs_a[0] == "w0 w1 w2"
    assert len(result.cells) == 2
    for cell in result.cells:
        for run in cell.runs:
            assert run.metrics["completed"] == 2 and run.metrics["failed"] == 0
            assert run.metrics.output_shortfall == 0
    # On the wire: encapsulated keys and sealed frames, never a prompt or a request field.
    assert wire.lower().count(b"ehbp-encapsulated-key") >= 10
    assert CHECK_PROMPT not in wire and b"max_tokens" not in wire and b"ignore_eos" not in wire
    # Behind the gateway, the engine received them all in clear.
    seen = await _seen(gw)
    assert any("capital of France" in p for p in seen)
    assert len(seen) >= 2 * (1 + 1 + 2 + 2) + 2  # probes, checks, warm-ups and runs of both arms


def _bench_cli(home: Path, url: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable, "-m", "ccai.cli", "bench", "serve", "--url", url, "--model", "words",
        "--concurrency", "2", "--io", "8/3", "--repeats", "1", "--num-prompts", "2",
        "--warmup-requests", "0", "--prompt-ids", "--vocab-size", "500", "--check-prompts", "1",
        "--timeout", "30", "--no-plots", "-o", str(out), "--json", *extra,
    ]  # fmt: skip
    return subprocess.run(
        argv, check=False, env=subprocess_env(home), capture_output=True, text=True, timeout=120
    )


def test_cli_ehbp_manifest_and_refusal(words_gateway: Gateway, tmp_path: Path) -> None:
    gw = words_gateway
    # Verification fails (simulated evidence without --allow-simulated): exit 1, no prompt sent.
    refused = _bench_cli(gw.home, gw.url, tmp_path / "refused", "--ehbp")
    assert refused.returncode == 1, refused.stderr
    error = json.loads(refused.stdout)
    assert "simulated" in json.dumps(error).lower()
    assert not (tmp_path / "refused" / "manifest.json").exists()
    assert asyncio.run(_seen(gw)) == []

    # Plaintext against the gateway: its refusal makes the probe fail (usage error, exit 2).
    plain = _bench_cli(gw.home, gw.url, tmp_path / "plain")
    assert plain.returncode == 2, plain.stderr
    assert asyncio.run(_seen(gw)) == []

    ok = _bench_cli(gw.home, gw.url, tmp_path / "ok", "--ehbp", "--allow-simulated", "--home", str(gw.home))
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout)
    assert summary["mode"] == "single" and summary["cells"]
    assert summary["attestations"]["A"]["summary"]["SIMULATED"]
    manifest = json.loads((tmp_path / "ok" / "manifest.json").read_text())
    arm = manifest["arms"]["A"]
    assert arm["ehbp"] is True and manifest["config"]["ehbp"] is True
    assert arm["attestation"]["document"]["simulated"] is True
    assert arm["attestation"]["summary"]["CPU TEE"]
    assert arm["attestation"]["reattestations"] == 0
    assert any(CHECK_PROMPT.decode() in p for p in asyncio.run(_seen(gw)))


def test_cli_ehbp_options_need_an_ehbp_arm(tmp_path: Path, ccai_home: Path) -> None:
    res = _bench_cli(ccai_home, "http://127.0.0.1:9", tmp_path / "x", "--allow-simulated")
    assert res.returncode == 2 and "--ehbp" in res.stdout
    res = _bench_cli(ccai_home, "http://127.0.0.1:9", tmp_path / "x", "--baseline-ehbp")
    assert res.returncode == 2 and "--baseline-url" in res.stdout


async def test_arm_reattests_once_when_the_key_changes(gateway: FakeGateway) -> None:  # noqa: F811
    trust = _trust(gateway.home)
    arm = await EhbpArm.attest(gateway.url + "/v1", trust)
    first = arm.attestation.hpke_public_key
    assert gateway.attestations == 1 and arm.url == gateway.url
    endpoint = Endpoint(url=gateway.url, model="fake", api="chat")
    prompt = Prompt(text="hello", token_ids=None, input_len=1)
    clients = [arm.client(connections=2, timeout=30) for _ in range(2)]
    try:
        res = await send_request(clients[0], endpoint, prompt, 8, timeout=30)
        assert res.success and res.text == "Attested hello from the gateway"
        new_key = gateway.rotate()
        # Both clients hold the old key; the first 422 re-attests, the second client reuses it.
        for http in clients:
            res = await send_request(http, endpoint, prompt, 8, timeout=30)
            assert res.success, res.error
        assert arm.reattestations == 1 and gateway.attestations == 2
        assert arm.attestation.hpke_public_key == new_key.public_key != first
        # A gateway that now lies about its nonce: the re-attestation is refused, the request fails.
        gateway.rotate()
        gateway.wrong_nonce = True
        res = await send_request(clients[0], endpoint, prompt, 8, timeout=30)
        assert not res.success and res.error_kind == "attestation" and "nonce" in (res.error or "").lower()
        assert arm.attestation.hpke_public_key == new_key.public_key
    finally:
        for http in clients:
            await http.aclose()
    assert len(gateway.api_requests) == 3  # the refused one never reached the API

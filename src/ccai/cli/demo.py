"""``ccai demo``: confidential inference end to end, on loopback, on virtual hardware (SIMULATED).

One command tells the whole story with the real components:

1. an attestation service and a key broker (both SQLite, real uvicorn servers on free loopback
   ports) start while a virtual TDX VM with virtual H100s in CC mode is created;
2. the VM is measured once (a composite bundle verified offline) and its MRTD/RTMR0 pinned;
3. the model owner's sealed SmolLM2 (sealed once under the demo's home) gets its KEK stored in the
   broker with a policy for exactly that VM: TDX with those measurements, N H100s, CC on, DevTools
   off, RIM measurements matching, simulated evidence allowed (this broker runs with allow-simulated);
4. ``ccai serve gateway`` boots in the VM as its own process — evidence, key release through RCAR,
   GPUs ready, the model decrypted into memory, the engine — its boot states shown as they pass;
5. the verifying client fetches the attestation document for a fresh nonce and verifies it offline
   (it also carries the attestation service's token);
6. ``ccai.client.connect`` (the official openai SDK, bodies EHBP-encrypted to the attested key)
   streams the model's answer;
7. the gateway rotates its HPKE key (SIGHUP): the client's next request gets EHBP's 422 key-config
   problem, the client attests again and the request succeeds;
8. refusal: a gateway whose virtual GPUs are in DevTools mode gets no key from the broker
   (``devtools_on``) and never serves;
9. refusal: a relay presenting its own HPKE key — at ``/.well-known/hpke-keys``, then also inside
   the attestation document — is refused by the client, which never sends the prompt;
10. the broker's hash-chained audit log is exported and checked.

Every check is the library's; the demo only arranges and renders. Any outcome other than the
expected one — a refusal that did not happen included — fails the command (exit 1). The artefacts
(evidence, attestation documents, policy, audit log, logs, the VM state) stay in ``--output-dir``,
else in a new directory under the system temp directory named on the last line.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from ccai.cli._output import console, print_json
from ccai.cli.gpu import SIMULATED_LABEL
from ccai.errors import BindingError, Error, UsageError, VerificationError

if TYPE_CHECKING:
    from ccai.cli._demo_parts import GatewayProcess
    from ccai.client import VerifiedOpenAI

__all__ = ["DEMO_QUESTION", "DemoRun", "demo", "run_demo"]

#: What the demo asks the model.
DEMO_QUESTION = "What is the capital of France?"
#: The broker resource holding the demo model's KEK.
DEMO_RESOURCE = "models/kek/smollm2"


@dataclass(slots=True)
class DemoRun:
    """What the demo did: one record per step, and whether to print for people as it goes.

    Attributes:
        verbose: Print each step for people (False for ``--json``).
        steps: ``{"step": n, "title": ..., "seconds": ..., **facts}`` per step.
        refusals: ``{"name", "expected", "observed", "step"}`` per refusal the demo provoked.
        started: ``time.monotonic()`` at the start.
    """

    verbose: bool
    steps: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[dict[str, Any]]:
        """Announce a step, yield its facts to fill in, and record its duration."""
        facts: dict[str, Any] = {"step": len(self.steps) + 1, "title": title}
        self.steps.append(facts)
        self.say(f"\n[bold cyan]({facts['step']}) {escape(title)}[/]")
        begun = time.monotonic()
        yield facts
        facts["seconds"] = round(time.monotonic() - begun, 3)

    def say(self, text: str, **options: Any) -> None:
        """Print for people (rich markup) when verbose."""
        if self.verbose:
            console.print(text, highlight=False, soft_wrap=True, **options)

    def refused(self, facts: dict[str, Any], name: str, expected: str, observed: str) -> None:
        """Record a refusal that happened as expected."""
        self.refusals.append(
            {"name": name, "step": facts["step"], "expected": expected, "observed": observed}
        )
        facts["refusal"] = {"name": name, "expected": expected, "observed": observed}
        self.say(f"[bold green]refused as expected[/] ({escape(name)}): {escape(observed)}")

    def elapsed(self) -> float:
        """Seconds since the demo started."""
        return time.monotonic() - self.started


def _expect(condition: bool, step: dict[str, Any], message: str, **detail: Any) -> None:
    """Fail the demo (exit 1) when an outcome is not the expected one."""
    if not condition:
        raise VerificationError(f"demo: {message}", step=f"({step['step']}) {step['title']}", **detail)


def _write(path: Path, data: bytes | str) -> Path:
    from ccai._files import atomic_write

    atomic_write(path, data.encode() if isinstance(data, str) else data)
    return path


# -- the model owner's side -------------------------------------------------------------------------


def sealed_demo_model(demo_home: Path) -> tuple[Path, Any, bool]:
    """The embedded SmolLM2 sealed under ``demo_home`` with its owner's KEK (sealed on first use).

    Returns:
        ``(sealed directory, KEK, whether it was sealed now)``.
    """
    from ccai._embedded_model import EMBEDDED_MODEL_NAME, embedded_model_dir
    from ccai.sealed import new_kek, read_kek, seal, write_kek

    sealed = demo_home / f"{EMBEDDED_MODEL_NAME}.sealed"
    kek_file = demo_home / f"{EMBEDDED_MODEL_NAME}.kek.json"
    if sealed.is_dir() and kek_file.is_file():
        return sealed, read_kek(kek_file), False
    demo_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    import shutil

    shutil.rmtree(sealed, ignore_errors=True)
    kek = new_kek()
    write_kek(kek, kek_file)  # mode 0600: the model owner's key, kept beside the owner's sealed copy
    seal(embedded_model_dir(), sealed, kek)
    return sealed, kek, True


def demo_policy(mr_td: str, rtmr0: str, gpus: int) -> dict[str, Any]:
    """The broker's (and the client's) policy for the demo VM: its TDX measurements, ``gpus`` H100s
    in CC mode with DevTools off and RIM-matching measurements, simulated evidence allowed by name."""
    return {
        "format": "ccai-policy/1",
        "name": "demo-virtual-tdx-h100",
        "description": (
            "SIMULATED: the demo's virtual TDX VM with virtual H100s (test PKI). Never for real keys."
        ),
        "allow_simulated": True,
        "gpus": {"count": gpus, "distinct": True},
        "gpu": {
            "claims": {"x-ccai-gpu-arch": "HOPPER", "measres": "success"},
        },
        "cpu": {"tees": ["tdx"], "tdx": {"mr_td": [mr_td], "rtmr0": [rtmr0]}},
    }


# -- the steps --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Stack:
    """What the first step started."""

    out: Path
    vm_home: Path
    gpus: int
    kbs_url: str = ""
    service_url: str = ""
    admin: str = ""


def step_start(
    run: DemoRun, stack: _Stack, services: contextlib.ExitStack, pool: ThreadPoolExecutor, demo_home: Path
) -> Future[tuple[Path, Any, bool]]:
    """(1) The virtual VM, the attestation service and the key broker; the model sealing starts too."""
    from ccai.cli._demo_parts import log_to_file, serve_in_thread
    from ccai.device import CcMode
    from ccai.kbs import KbsSettings, create_kbs_app, read_admin_credential
    from ccai.service import ServiceSettings, create_app
    from ccai.virtual import open_virtual_vm, virtual_trust_anchors

    with run.step("start the key broker and the attestation service; create the virtual TDX VM") as facts:
        sealing = pool.submit(sealed_demo_model, demo_home)
        _, gpu = open_virtual_vm(tee="tdx", gpus=stack.gpus, home=stack.vm_home)
        if not gpu.status().cc_feature or gpu.status().devtools:
            gpu.set_cc_mode(CcMode.ON)
        anchors = virtual_trust_anchors(stack.vm_home, gpu=True, tdx=True)
        logs = stack.out / "logs"
        logs.mkdir(exist_ok=True)
        state = stack.out / "state"
        log_to_file("ccai.kbs", logs / "kbs.log")
        kbs_app = create_kbs_app(
            KbsSettings.build(
                database_url=f"sqlite+aiosqlite:///{state / 'kbs.db'}",
                allow_simulated=True,
                offline=True,
                master_key_file=state / "kbs-master.keys",
                admin_credential_file=state / "kbs-admin.token",
            ),
            anchors=anchors,
        )
        service_app = create_app(
            ServiceSettings.build(
                database_url=f"sqlite+aiosqlite:///{state / 'attestation.db'}",
                allow_simulated=True,
                allow_anonymous=True,
                offline=True,
                master_key_file=state / "attestation-master.key",
            ),
            anchors=anchors,
        )
        log_to_file("ccai.service", logs / "attestation-service.log")
        # One after the other: each runs its database migrations at startup (Alembic, not for two
        # event loops at once); the sealing goes on meanwhile.
        stack.kbs_url = services.enter_context(serve_in_thread(kbs_app))
        stack.service_url = services.enter_context(serve_in_thread(service_app))
        stack.admin = read_admin_credential(state / "kbs-admin.token")
        status = gpu.status()
        facts.update(
            key_broker=stack.kbs_url,
            attestation_service=stack.service_url,
            databases=[str(state / "kbs.db"), str(state / "attestation.db")],
            vm={"tee": "tdx", "home": str(stack.vm_home)},
            gpus=len(status.gpus),
            cc_mode="devtools" if status.devtools else ("on" if status.cc_feature else "off"),
            simulated=status.simulated,
        )
        run.say(f"key broker          {stack.kbs_url}  (SQLite, allow-simulated)")
        run.say(f"attestation service {stack.service_url}  (SQLite, allow-simulated)")
        run.say(
            f"virtual TDX VM with {len(status.gpus)} virtual H100s, CC mode {facts['cc_mode']} "
            f"[bold yellow](SIMULATED)[/]"
        )
    return sealing


def step_measure(run: DemoRun, stack: _Stack) -> dict[str, Any]:
    """(2) Measure the VM: one composite bundle, verified offline; its MRTD and RTMR0 become the policy."""
    from ccai.evidence import dump_evidence_bundle
    from ccai.gateway import Attester
    from ccai.verify import Verifier
    from ccai.virtual import virtual_trust_anchors

    with run.step("measure the VM: collect composite evidence (TDX quote + GPUs) and verify it") as facts:
        nonce = secrets.token_bytes(32)
        attester = Attester.open_virtual(tee="tdx", gpus=stack.gpus, home=stack.vm_home)
        try:
            bundle = attester.bundle(nonce)
        finally:
            attester.close()
        path = _write(stack.out / "reference-evidence.json", dump_evidence_bundle(bundle))
        verifier = Verifier.simulated(virtual_trust_anchors(stack.vm_home, gpu=True, tdx=True))
        verified = verifier.verify_bundle(bundle, expected_nonce=nonce)
        cpu = dict(verified.cpu_claims or {})
        facts.update(
            output=str(path),
            nonce=nonce.hex(),
            gpus=len(verified.gpus),
            mr_td=cpu.get("mr_td"),
            rtmr0=cpu.get("rtmr0"),
            tcb_status=cpu.get("tcb_status"),
            measurements=[g.claims.get("measres") for g in verified.gpus],
        )
        run.say(
            f"TDX quote + {len(verified.gpus)} GPU reports bound to a fresh nonce, verified offline; "
            f"TCB {cpu.get('tcb_status')}, GPU measurements {', '.join(map(str, facts['measurements']))}"
        )
        run.say(f"MRTD  {cpu.get('mr_td')}\nRTMR0 {cpu.get('rtmr0')}")
        return facts


def step_release_policy(
    run: DemoRun, stack: _Stack, sealing: Future[tuple[Path, Any, bool]], measured: dict[str, Any]
) -> tuple[Path, dict[str, Any]]:
    """(3) Store the owner's KEK in the broker and the policy that guards it."""
    import httpx

    from ccai.sealed import kek_to_jwk

    with run.step("the model owner puts the KEK into the broker with a policy for this VM") as facts:
        sealed, kek, sealed_now = sealing.result()
        policy = demo_policy(str(measured["mr_td"]), str(measured["rtmr0"]), stack.gpus)
        _write(stack.out / "policy.json", json.dumps(policy, indent=2))
        headers = {"Authorization": f"Bearer {stack.admin}"}
        with httpx.Client(base_url=stack.kbs_url, headers=headers, timeout=30) as http:
            put = http.post(f"/kbs/v0/resource/{DEMO_RESOURCE}", content=kek_to_jwk(kek))
            _expect(put.status_code == 200, facts, f"the broker did not store the KEK: {put.text}")
            policy_set = http.put(
                "/kbs/v0/admin/policy/smollm2",
                json={"document": json.dumps(policy), "resource": DEMO_RESOURCE},
            )
            _expect(policy_set.status_code == 200, facts, f"the broker refused the policy: {policy_set.text}")
        del kek
        facts.update(
            sealed_model=str(sealed),
            sealed_now=sealed_now,
            resource=DEMO_RESOURCE,
            version=put.json()["version"],
            policy=str(stack.out / "policy.json"),
        )
        run.say(
            f"sealed model {escape(str(sealed))} ({'sealed now' if sealed_now else 'reused'}); "
            f"KEK stored as {DEMO_RESOURCE} v{facts['version']}"
        )
        run.say(
            f"policy: TDX with that MRTD/RTMR0, {stack.gpus} H100s, CC on, DevTools off, RIM measurements "
            "matching, [bold yellow]simulated allowed (SIMULATED broker)[/]"
        )
        return sealed, policy


def _gateway_args(stack: _Stack, sealed: Path, *, attestation_service: bool) -> list[str]:
    from ccai._embedded_model import EMBEDDED_MODEL_NAME

    args = [
        "--model", str(sealed), "--model-name", EMBEDDED_MODEL_NAME,
        "--kbs", stack.kbs_url, "--resource", DEMO_RESOURCE,
        "--simulate", "tdx", "--gpus", str(stack.gpus), "--device", "cpu",
    ]  # fmt: skip
    if attestation_service:
        args += ["--attestation-service", stack.service_url]
    return args


def start_devtools_gateway(stack: _Stack, sealed: Path) -> GatewayProcess:
    """A second VM, identical but for its GPUs in CC DevTools mode, and its gateway (refused later)."""
    from ccai.cli._demo_parts import GatewayProcess
    from ccai.device import CcMode
    from ccai.virtual import open_virtual_vm

    home = stack.out / "state" / "vm-devtools"
    _, gpu = open_virtual_vm(tee="tdx", gpus=stack.gpus, home=home)
    gpu.set_cc_mode(CcMode.DEVTOOLS)
    return GatewayProcess(
        _gateway_args(stack, sealed, attestation_service=False),
        home=home,
        log=stack.out / "logs" / "gateway-devtools.log",
    )


def step_boot(run: DemoRun, stack: _Stack, sealed: Path) -> GatewayProcess:
    """(4) ``ccai serve gateway`` in the VM; its boot states as they pass."""
    from ccai.cli._demo_parts import GatewayProcess

    with run.step("boot the gateway in the VM (ccai serve gateway, its own process)") as facts:
        gateway = GatewayProcess(
            _gateway_args(stack, sealed, attestation_service=True),
            home=stack.vm_home,
            log=stack.out / "logs" / "gateway.log",
        )
        states: list[dict[str, Any]] = []
        begun = time.monotonic()
        while True:
            event = gateway.next_event(timeout=240)
            name = event["event"]
            at = time.monotonic() - begun
            if name == "boot_state":
                states.append({"state": event["state"], "at": round(at, 3)})
                run.say(f"  {at:6.2f} s  {event['state']}")
            elif name == "key_released":
                run.say(f"  {at:6.2f} s    the broker released the KEK (RCAR, policy passed)")
            elif name == "evidence_collected":
                run.say(f"  {at:6.2f} s    evidence collected: TDX quote + {event.get('gpus')} GPUs")
            elif name == "model_loaded":
                run.say(f"  {at:6.2f} s    model decrypted into memory ({event.get('device')})")
            elif name == "ready":
                break
            elif name in ("boot_failed", "exited"):
                facts["states"] = states
                _expect(False, facts, f"the gateway did not boot: {event.get('reason', 'it exited')}")
        facts.update(url=gateway.url, states=states, boot_seconds=round(time.monotonic() - begun, 3))
        run.say(f"gateway ready at {gateway.url}")
        return gateway


def step_verify_document(run: DemoRun, stack: _Stack, gateway: GatewayProcess, policy: dict[str, Any]) -> Any:
    """(5) Fetch the attestation document for a fresh nonce and verify it offline."""
    import httpx

    from ccai.client import ATTESTATION_PATH, verify_document
    from ccai.verify import load_policy
    from ccai.virtual import virtual_trust_anchors

    with run.step("the client verifies the gateway's attestation document (fresh nonce, offline)") as facts:
        assert gateway.url is not None
        nonce = secrets.token_bytes(32)
        r = httpx.get(gateway.url + ATTESTATION_PATH, params={"nonce": nonce.hex()}, timeout=60)
        _expect(r.status_code == 200, facts, f"no attestation document (HTTP {r.status_code})")
        path = _write(stack.out / "attestation-document.json", r.content)
        anchors = virtual_trust_anchors(stack.vm_home, gpu=True, tdx=True)
        attestation = verify_document(
            gateway.url,
            r.content,
            nonce=nonce,
            anchors=anchors,
            policy=load_policy(policy),
            allow_simulated=True,
        )
        token = json.loads(r.content).get("attestation_token")
        service_verdict = None
        if isinstance(token, list) and token and isinstance(token[0], list):
            import base64

            claims = json.loads(base64.urlsafe_b64decode(token[0][1].split(".")[1] + "=="))
            service_verdict = {
                "x-nvidia-overall-att-result": claims.get("x-nvidia-overall-att-result"),
                "x-ccai-hpke-public-key": claims.get("x-ccai-hpke-public-key"),
            }
        _expect(service_verdict is not None, facts, "the document carries no attestation-service token")
        assert service_verdict is not None
        _expect(
            service_verdict["x-ccai-hpke-public-key"] == attestation.hpke_public_key.hex(),
            facts,
            "the attestation service's token names another key",
        )
        facts.update(
            output=str(path),
            summary=dict(attestation.summary()),
            attestation_service=service_verdict,
            collect_seconds=float(r.headers.get("x-ccai-collect-seconds", "0")),
        )
        for label, value in attestation.summary():
            style = "bold yellow" if label == "SIMULATED" else "bold"
            run.say(f"[{style}]{label:<13}[/] {escape(value)}")
        run.say(
            "attestation service token: overall result "
            f"{service_verdict['x-nvidia-overall-att-result']}, bound to the same HPKE key"
        )
        return anchors


def _chat(client: VerifiedOpenAI, run: DemoRun, question: str, max_tokens: int) -> str:
    from ccai._embedded_model import EMBEDDED_MODEL_NAME

    stream = client.chat.completions.create(
        model=EMBEDDED_MODEL_NAME,
        messages=[{"role": "user", "content": question}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
    )
    parts: list[str] = []
    for chunk in stream:
        text = chunk.choices[0].delta.content if chunk.choices else None
        if text:
            parts.append(text)
            if run.verbose:
                console.print(text, end="", soft_wrap=True, highlight=False, markup=False)
    run.say("")
    return "".join(parts)


def step_chat(  # noqa: PLR0917 - one step's inputs, called once
    run: DemoRun,
    gateway: GatewayProcess,
    anchors: Any,
    policy: dict[str, Any],
    question: str,
    max_tokens: int,
) -> VerifiedOpenAI:
    """(6) ``ccai.client.connect``: attest, pin the key, stream the answer through EHBP."""
    from ccai.client import connect
    from ccai.verify import load_policy

    with run.step(
        "chat through ccai.client.connect (openai SDK, prompt encrypted to the attested key)"
    ) as facts:
        assert gateway.url is not None
        client = connect(
            gateway.url, anchors=anchors, policy=load_policy(policy), allow_simulated=True, max_retries=0
        )
        run.say(f"[bold]user[/]  {escape(question)}")
        run.say("[bold]model[/] ", end="")
        answer = _chat(client, run, question, max_tokens)
        _expect(bool(answer.strip()), facts, "the model gave no answer")
        facts.update(
            question=question, answer=answer, hpke_public_key=client.attestation.hpke_public_key.hex()
        )
        return client


def step_rotate(run: DemoRun, gateway: GatewayProcess, client: VerifiedOpenAI, max_tokens: int) -> None:
    """(7) SIGHUP: the gateway's key changes; the client gets 422, attests again, and succeeds."""
    with run.step(
        "the gateway rotates its HPKE key; the client's stale key gets 422 and it re-attests"
    ) as facts:
        old = client.attestation.hpke_public_key
        gateway.process.send_signal(signal.SIGHUP)
        while True:
            event = gateway.next_event(timeout=30)
            if event["event"] == "hpke_key_rotated":
                break
            _expect(event["event"] != "exited", facts, "the gateway exited instead of rotating its key")
        question = "Name one colour of the French flag."
        run.say(f"[bold]user[/]  {escape(question)}  (encrypted to the old key first)")
        run.say("[bold]model[/] ", end="")
        answer = _chat(client, run, question, max_tokens)
        new = client.attestation.hpke_public_key
        _expect(new != old, facts, "the client did not attest the gateway's new key")
        facts.update(old_key=old.hex(), new_key=new.hex(), answer=answer, reattested=True)
        run.say(f"key {old.hex()[:16]}… → {new.hex()[:16]}…: 422 key-config, re-attested, answered")


def step_devtools_refusal(run: DemoRun, stack: _Stack, devtools: GatewayProcess) -> None:
    """(8) The DevTools gateway got no key and never served."""
    import httpx

    with run.step("refusal: a gateway whose GPUs are in CC DevTools mode gets no key") as facts:
        code = devtools.wait_exit(240)
        states = []
        reason = ""
        while not devtools.events.empty():
            event = devtools.events.get()
            if event["event"] == "boot_state":
                states.append(event["state"])
            if event["event"] == "boot_failed":
                reason = str(event.get("reason", ""))
        audit = httpx.get(
            f"{stack.kbs_url}/kbs/v0/admin/audit",
            headers={"Authorization": f"Bearer {stack.admin}"},
            timeout=30,
        ).json()["records"]
        refusals = [r for r in audit if r.get("verdict") != "pass" and r.get("event") == "attest"]
        broker_reason = str(refusals[-1]["reason"]) if refusals else ""
        facts.update(
            exit_code=code,
            states=states,
            reason=reason,
            broker_reason=broker_reason,
            served="ready" in states,
        )
        _expect(code != 0, facts, "the DevTools gateway did not fail", expected="non-zero exit", actual=code)
        _expect("ready" not in states, facts, "the DevTools gateway became ready")
        _expect(
            broker_reason.startswith("devtools_on"),
            facts,
            "the broker did not refuse the DevTools GPUs by name",
            expected="devtools_on",
            actual=broker_reason,
        )
        run.say(f"boot states: {' → '.join(states)}; exit code {code}")
        run.refused(
            facts, "devtools_on", "the broker releases no key; the gateway never serves", broker_reason
        )


def step_relay_refusal(
    run: DemoRun, stack: _Stack, gateway: GatewayProcess, anchors: Any, policy: dict[str, Any]
) -> None:
    """(9) A relay presenting its own HPKE key is refused before any prompt is sent."""
    from ccai.cli._demo_parts import KeySwappingRelay
    from ccai.client import connect
    from ccai.verify import load_policy
    from ccai.virtual import run_in_background

    with run.step("refusal: a relay presenting another HPKE key than the one the evidence binds") as facts:
        assert gateway.url is not None
        attempts: list[dict[str, Any]] = []
        for rewrite, label in ((False, "serves its own key"), (True, "also rewrites the document's key")):
            relay = KeySwappingRelay(gateway.url, rewrite_document=rewrite)
            with run_in_background(relay) as relay_url:
                try:
                    connect(
                        relay_url,
                        anchors=anchors,
                        policy=load_policy(policy),
                        allow_simulated=True,
                        max_retries=0,
                    )
                except Error as exc:
                    error: Error | None = exc
                else:
                    error = None
            name = "relay-document-rewritten.json" if rewrite else "relay-document.json"
            if relay.document is not None:
                _write(stack.out / name, relay.document)
            observed = f"{type(error).__name__}: {error.message}" if error is not None else "accepted"
            attempts.append(
                {"relay": label, "refused": error is not None, "error": observed,
                 "prompts_reached_relay": relay.prompts_received, "paths": dict(relay.seen)}
            )  # fmt: skip
            _expect(isinstance(error, BindingError), facts, f"the client did not refuse a relay that {label}",
                    expected="BindingError", actual=observed)  # fmt: skip
            _expect(relay.prompts_received == 0, facts, "a prompt reached the relay")
            run.say(f"relay that {label}: [bold]{escape(observed)}[/]; requests to /v1 at the relay: 0")
            run.refused(facts, f"hpke_key_not_bound ({label})", "the client sends no prompt", observed)
        facts["attempts"] = attempts


def step_audit(run: DemoRun, stack: _Stack) -> None:
    """(10) Export the broker's audit log and check its hash chain."""
    import httpx

    from ccai.kbs import verify_audit_chain

    with run.step("export the key broker's audit log and check its hash chain") as facts:
        records = httpx.get(
            f"{stack.kbs_url}/kbs/v0/admin/audit",
            headers={"Authorization": f"Bearer {stack.admin}"},
            timeout=30,
        ).json()["records"]
        path = _write(stack.out / "kbs-audit.json", json.dumps(records, indent=2))
        checked = verify_audit_chain(records)
        rows = [
            {k: r.get(k) for k in ("seq", "event", "resource", "verdict", "reason", "policy")}
            for r in records
        ]
        facts.update(output=str(path), records=checked, chain="intact", log=rows)
        for row in rows:
            reason = f" ({row['reason']})" if row.get("reason") else ""
            run.say(
                f"  #{row['seq']} {row['event']:<7} {row['resource'] or '-':<20} {row['verdict']}{reason}"
            )
        run.say(f"{checked} records, hash chain intact")


def run_demo(
    *,
    output_dir: Path,
    demo_home: Path,
    gpus: int = 2,
    question: str = DEMO_QUESTION,
    max_tokens: int = 24,
    verbose: bool = True,
) -> DemoRun:
    """Run every step in order; an unexpected outcome raises its ccai error.

    Args:
        output_dir: Where every artefact, log and the VM state go (kept).
        demo_home: Where the sealed model and its owner's KEK are kept between runs.
        gpus: Virtual H100s in the VM.
        question: The prompt.
        max_tokens: Most tokens in each answer.
        verbose: Print for people as the steps run.

    Returns:
        The record of the steps and refusals.
    """
    run = DemoRun(verbose=verbose)
    run.say(f"[bold yellow]{SIMULATED_LABEL}[/]")
    (output_dir / "state").mkdir(parents=True, exist_ok=True)
    stack = _Stack(out=output_dir, vm_home=output_dir / "state" / "vm", gpus=gpus)
    with contextlib.ExitStack() as services, ThreadPoolExecutor(max_workers=3) as pool:
        sealing = step_start(run, stack, services, pool, demo_home)
        measured = step_measure(run, stack)
        sealed, policy = step_release_policy(run, stack, sealing, measured)
        gateway = step_boot(run, stack, sealed)
        services.callback(gateway.stop)
        # The DevTools VM's gateway boots while the client works with the real one.
        devtools = start_devtools_gateway(stack, sealed)
        services.callback(devtools.stop)
        anchors = step_verify_document(run, stack, gateway, policy)
        client = step_chat(run, gateway, anchors, policy, question, max_tokens)
        step_rotate(run, gateway, client, max_tokens)
        step_devtools_refusal(run, stack, devtools)
        step_relay_refusal(run, stack, gateway, anchors, policy)
        step_audit(run, stack)
        client.close()
    return run


def demo(
    *,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            "-o",
            help="Keep every artefact here (default: a new directory under the system temp directory).",
            metavar="DIR",
        ),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Where the sealed demo model and its owner's KEK are kept between runs "
            "(default: $CCAI_HOME/demo).",
        ),
    ] = None,
    gpus: Annotated[int, typer.Option("--gpus", min=1, max=8, help="Virtual H100s in the VM.")] = 2,
    prompt: Annotated[str, typer.Option("--prompt", help="What to ask the model.")] = DEMO_QUESTION,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, max=512, help="Most tokens per answer.")
    ] = 24,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON document, every step.")] = False,
) -> None:
    """Confidential inference end to end on virtual hardware: broker, gateway, client (SIMULATED)."""
    import importlib.util

    import fastapi  # noqa: F401  (the [service] extra: fail before anything starts)

    for module in ("openai", "pyhpke", "torch", "transformers"):  # [gateway] and [torch], not imported here
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    from ccai._home import ccai_home

    if output_dir is None:
        output_dir = Path(tempfile.mkdtemp(prefix="ccai-demo-"))
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --output-dir {output_dir}: {exc.strerror}") from None
    demo_home = home if home is not None else ccai_home() / "demo"
    run = run_demo(
        output_dir=output_dir, demo_home=demo_home, gpus=gpus, question=prompt, max_tokens=max_tokens,
        verbose=not json,
    )  # fmt: skip
    seconds = round(run.elapsed(), 2)
    if json:
        print_json(
            {
                "simulated": True,
                "result": "ok",
                "seconds": seconds,
                "output_dir": str(output_dir),
                "steps": run.steps,
                "refusals": run.refusals,
            }
        )
        return
    console.print(
        f"\n[bold green]demo finished:[/] {len(run.steps)} steps, {len(run.refusals)} refusals as expected, "
        f"{seconds:.1f} s [bold yellow](SIMULATED)[/]"
    )
    console.print(f"artefacts kept in {escape(str(output_dir))}", soft_wrap=True, highlight=False)

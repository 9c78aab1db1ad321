"""``ccai demo``: the whole confidential-inference story runs end to end on loopback — key broker,
attestation service, a gateway in a virtual TDX VM with virtual H100s, the verifying client's chat,
a key rotation, and the refusals — labelled SIMULATED, with every artefact kept."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ccai.cli.__main__ import main
from ccai.evidence import load_evidence_bundle
from ccai.kbs import verify_audit_chain

pytestmark = [pytest.mark.slow, pytest.mark.torch, pytest.mark.extra("gateway")]

TITLES = [
    "start the key broker and the attestation service; create the virtual TDX VM",
    "measure the VM: collect composite evidence (TDX quote + GPUs) and verify it",
    "the model owner puts the KEK into the broker with a policy for this VM",
    "boot the gateway in the VM (ccai serve gateway, its own process)",
    "the client verifies the gateway's attestation document (fresh nonce, offline)",
    "chat through ccai.client.connect (openai SDK, prompt encrypted to the attested key)",
    "the gateway rotates its HPKE key; the client's stale key gets 422 and it re-attests",
    "refusal: a gateway whose GPUs are in CC DevTools mode gets no key",
    "refusal: a relay presenting another HPKE key than the one the evidence binds",
    "export the key broker's audit log and check its hash chain",
]


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["ccai", *argv])
    with pytest.raises(SystemExit) as done:
        main()
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out + ("\n" + err if done.value.code else "")


def test_demo_json_names_every_step_and_refusal_and_keeps_the_artefacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "artefacts"
    code, out = _main(monkeypatch, capsys, "demo", "--json", "-o", str(out_dir))
    assert code == 0, out
    doc = json.loads(out)  # exactly one JSON document
    assert doc["result"] == "ok" and doc["simulated"] is True
    assert doc["output_dir"] == str(out_dir)
    assert [s["title"] for s in doc["steps"]] == TITLES
    steps = {s["title"]: s for s in doc["steps"]}

    boot = steps[TITLES[3]]
    assert [s["state"] for s in boot["states"]] == [
        "collecting-evidence", "fetching-key", "setting-ready", "loading-model", "starting-engine", "ready",
    ]  # fmt: skip
    chat = steps[TITLES[5]]
    assert "Paris" in chat["answer"]
    rotated = steps[TITLES[6]]
    assert rotated["reattested"] is True and rotated["old_key"] != rotated["new_key"]

    names = [r["name"] for r in doc["refusals"]]
    assert names[0] == "devtools_on" and len(names) == 3
    assert all(n.startswith("hpke_key_not_bound") for n in names[1:])
    assert steps[TITLES[7]]["broker_reason"].startswith("devtools_on")
    assert steps[TITLES[7]]["exit_code"] == 1 and "ready" not in steps[TITLES[7]]["states"]
    assert all(a["prompts_reached_relay"] == 0 and a["refused"] for a in steps[TITLES[8]]["attempts"])

    # -o DIR keeps every artefact the steps name.
    document = out_dir / "attestation-document.json"
    bundle = load_evidence_bundle(document.read_bytes())
    assert bundle.hpke_public_key is not None and bundle.hpke_public_key.hex() == chat["hpke_public_key"]
    assert load_evidence_bundle((out_dir / "reference-evidence.json").read_bytes()).cpu is not None
    policy = json.loads((out_dir / "policy.json").read_text())
    assert policy["cpu"]["tdx"]["mr_td"] == [steps[TITLES[1]]["mr_td"]] and policy["allow_simulated"] is True
    audit = json.loads((out_dir / "kbs-audit.json").read_text())
    assert verify_audit_chain(audit) == len(audit) == steps[TITLES[9]]["records"]
    assert [r["verdict"] for r in audit if r["event"] == "release"] == ["pass"]
    assert (out_dir / "relay-document.json").is_file()
    assert (out_dir / "relay-document-rewritten.json").is_file()
    for log in ("gateway.log", "gateway-devtools.log", "kbs.log", "attestation-service.log"):
        assert (out_dir / "logs" / log).stat().st_size > 0, log
    assert '"event": "ready"' in (out_dir / "logs" / "gateway.log").read_text()
    assert Path(steps[TITLES[2]]["sealed_model"]).is_dir()


def test_demo_for_people_is_labelled_and_names_its_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    code, out = _main(monkeypatch, capsys, "demo")
    assert code == 0, out
    assert "SIMULATED" in out and "(10) export the key broker's audit log" in out
    assert "Paris" in out and "refused as expected (devtools_on)" in out
    assert "demo finished: 10 steps, 3 refusals as expected" in out
    last = out.strip().splitlines()[-1]
    kept = Path(last.removeprefix("artefacts kept in ").strip())
    assert last.startswith("artefacts kept in ") and kept.parent == tmp_path
    assert (kept / "attestation-document.json").is_file()

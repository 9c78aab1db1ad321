"""``ccai chat URL "prompt"``: attest a gateway, then stream its answer through encrypted bodies.

Calls :func:`ccai.client.connect` (the gateway's attestation document for a fresh nonce, verified
offline; the bound HPKE key pinned in an EHBP transport), prints the verification summary, then
streams the chat completion. Nothing but the nonce reaches the gateway before the verification
passed: a refusal exits 1 with the reason, the prompt unsent. ``--allow-simulated`` trusts the
virtual hardware's test PKI under ``$CCAI_HOME`` (or ``--home``) instead of the vendor roots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ccai.cli._options import AllowSimulatedOpt, gateway_trust
from ccai.cli._output import console, err_console, print_attestation, print_json

__all__ = ["chat"]


def chat(  # noqa: PLR0917 - Typer maps each parameter to an argument or option
    url: Annotated[str, typer.Argument(help="The gateway's base URL.", metavar="URL")],
    prompt: Annotated[str, typer.Argument(help="The user message.", metavar="PROMPT")],
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Policy JSON the gateway's evidence must satisfy.")
    ] = None,
    allow_simulated: AllowSimulatedOpt = False,
    model: Annotated[
        str | None, typer.Option("--model", help="Model id (default: the gateway's first).")
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Most tokens to generate.", min=1)] = 256,
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Virtual hardware state for --allow-simulated (default $CCAI_HOME)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the attestation and answer as JSON.")
    ] = False,
) -> None:
    """Verify a confidential gateway, then stream its answer to PROMPT."""
    from ccai.client import connect

    anchors, rules = gateway_trust(policy, allow_simulated=allow_simulated, home=home)
    client = connect(url, anchors=anchors, policy=rules, allow_simulated=allow_simulated, max_retries=0)
    attestation = client.attestation
    if not as_json:
        print_attestation(attestation.summary())
        err_console.print("[bold green]verified[/]: the prompt is encrypted to the attested key")
    chosen = model or client.models.list().data[0].id
    stream = client.chat.completions.create(
        model=chosen, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, stream=True
    )
    parts: list[str] = []
    for chunk in stream:
        text = chunk.choices[0].delta.content if chunk.choices else None
        if text:
            parts.append(text)
            if not as_json:
                console.print(text, end="", soft_wrap=True, highlight=False, markup=False)
    if as_json:
        document: dict[str, Any] = {
            "result": "ok",
            "attestation": attestation.summary_document(),
            "model": chosen,
            "answer": "".join(parts),
        }
        print_json(document)
    else:
        console.print()

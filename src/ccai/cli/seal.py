"""``ccai seal``, ``ccai unseal``, ``ccai keys new``, ``ccai sealed inspect|rewrap``: sealed models.

The commands parse arguments and call :mod:`ccai.sealed`; progress bars go to stderr so that
``--json`` output on stdout stays machine-readable.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from ccai.cli._output import console, err_console, print_json
from ccai.errors import UsageError
from ccai.sealed import (
    Header,
    Manifest,
    kek_to_jwk,
    new_kek,
    read_header,
    read_kek,
    read_manifest,
    rewrap,
    seal,
    unseal_to_directory,
    write_kek,
)

__all__ = ["keys_app", "seal_cmd", "sealed_app", "unseal_cmd"]

keys_app = typer.Typer(
    name="keys", help="Key-encryption keys (KEKs) for sealed models.", no_args_is_help=True
)
sealed_app = typer.Typer(name="sealed", help="Inspect and re-key sealed models.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
KekOpt = Annotated[Path, typer.Option("--kek", help="KEK file (from `ccai keys new`).")]
ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", min=1, help="Worker threads (default: cores, ≤ 16).")
]


@contextmanager
def _bar(description: str, *, enabled: bool) -> Iterator[Any]:
    """A rich transfer bar on stderr; yields a ``(done, total)`` callback (or ``None`` when disabled)."""
    if not enabled:
        yield None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    task = progress.add_task(description, total=None)
    lock = threading.Lock()
    started = False

    def update(done: int, total: int) -> None:
        # The bar appears with the first bytes, so an argument error shows no empty "0/? bytes" bar.
        nonlocal started
        with lock:
            if not started:
                progress.start()
                started = True
        progress.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        with lock:
            if started:
                progress.stop()


def _header_dict(header: Header) -> dict[str, Any]:
    return {
        "format": "ccai-sealed",
        "version": 1,
        "model_id": header.model_id.hex(),
        "chunk_size": header.chunk_size,
        "kid": header.kid,
    }


def _manifest_dict(manifest: Manifest, *, tensors: bool) -> dict[str, Any]:
    files = []
    for f in manifest.files:
        item: dict[str, Any] = {"name": f.name, "size": f.size, "sha256": f.sha256.hex(), "chunks": f.chunks}
        if f.safetensors is not None:
            item["tensor_count"] = len(f.safetensors.tensors)
            if tensors:
                item["tensors"] = [
                    {
                        "name": t.name,
                        "dtype": t.dtype,
                        "shape": list(t.shape),
                        "offset": t.offset,
                        "size": t.size,
                    }
                    for t in f.safetensors.tensors
                ]
        files.append(item)
    return {"total_size": manifest.total_size, "files": files}


def _files_table(manifest: Manifest) -> Table:
    table = Table(title="files (from the decrypted manifest)")
    for col in ("name", "size", "chunks", "tensors", "sha256"):
        table.add_column(col, justify="right" if col in {"size", "chunks", "tensors"} else "left")
    for f in manifest.files:
        n = str(len(f.safetensors.tensors)) if f.safetensors is not None else ""
        table.add_row(f.name, f"{f.size:,}", str(f.chunks), n, f.sha256.hex()[:16] + "…")
    return table


@keys_app.command("new")
def keys_new(
    *,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the KEK (mode 0600).")],
    kid: Annotated[str | None, typer.Option("--kid", help="Key id (default: random).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Generate a new 256-bit key-encryption key with a key id."""
    kek = new_kek(kid=kid)
    write_kek(kek, output)
    if json_out:
        print_json({"kid": kek.kid, "path": str(output)})
    else:
        console.print(f"wrote KEK [bold]{kek.kid}[/] to {output} (mode 0600) — keep it secret")


def seal_cmd(
    model_dir: Annotated[Path, typer.Argument(help="Model directory (safetensors, config, tokenizer).")],
    *,
    output: Annotated[Path, typer.Option("-o", "--output", help="Sealed model directory to create.")],
    kek: Annotated[Path | None, typer.Option("--kek", help="KEK file (from `ccai keys new`).")] = None,
    kbs: Annotated[
        str | None, typer.Option("--kbs", help="Store a new KEK in this key broker instead of a file.")
    ] = None,
    resource: Annotated[
        str | None, typer.Option("--resource", help="With --kbs: the broker resource REPO/TYPE/TAG.")
    ] = None,
    chunk_mib: Annotated[
        float, typer.Option("--chunk-mib", min=0.00390625, max=1024, help="Chunk size in MiB.")
    ] = 16,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Seal a model directory: every file encrypted in AES-256-GCM chunks under a fresh data key."""
    if not model_dir.is_dir():
        raise UsageError(f"model directory not found: {model_dir}")
    if kek is not None and kbs is None:
        key = read_kek(kek)
    elif kbs is not None and kek is None:
        if resource is None:
            raise UsageError("--kbs needs --resource REPO/TYPE/TAG")
        from ccai.cli.kbs import store_kek

        key = new_kek()
        # The broker holds the KEK before any ciphertext exists: a failed store seals nothing.
        store_kek(kbs, resource, kek_to_jwk(key))
    else:
        raise UsageError("give --kek FILE, or --kbs URL --resource REPO/TYPE/TAG")
    chunk = int(chunk_mib * (1 << 20)) // 16 * 16
    with _bar("sealing", enabled=not json_out) as progress:
        manifest = seal(model_dir, output, key, chunk_size=chunk, threads=threads, progress=progress)
    header = read_header(output)
    if json_out:
        print_json({**_header_dict(header), **_manifest_dict(manifest, tensors=False)})
    else:
        console.print(
            f"sealed {len(manifest.files)} files ({manifest.total_size:,} bytes) into {output}\n"
            f"model id {header.model_id.hex()}, data key wrapped by KEK {header.kid}"
        )


KbsOpt = Annotated[
    str | None, typer.Option("--kbs", help="Fetch the KEK from this key broker through attestation.")
]
ResourceOpt = Annotated[str | None, typer.Option("--resource", help="With --kbs: the KEK's REPO/TYPE/TAG.")]
SimulateOpt = Annotated[
    str | None,
    typer.Option("--simulate", help="With --kbs: attest as the virtual VM (tdx or snp).", metavar="tdx|snp"),
]
GpusOpt = Annotated[int | None, typer.Option("--gpus", help="With --simulate: virtual GPUs.")]
EvidenceFormatOpt = Annotated[
    str,
    typer.Option(
        "--evidence-format", help="With --kbs: composite or trustee evidence.", metavar="composite|trustee"
    ),
]


def _key(
    kek: Path | None,
    kbs: str | None,
    *,
    resource: str | None,
    simulate: str | None,
    gpus: int | None,
    evidence_format: str,
    required: bool = True,
) -> Any:
    """The key of a sealed-model command: a KEK file, or a broker KEK fetched through attestation
    (``--kbs URL --resource R``; the plaintext KEK then never leaves this process)."""
    if kek is not None and kbs is not None:
        raise UsageError("give --kek FILE or --kbs URL --resource REPO/TYPE/TAG, not both")
    if kbs is not None:
        if resource is None:
            raise UsageError("--kbs needs --resource REPO/TYPE/TAG")
        from ccai.cli.kbs import broker_key

        return broker_key(kbs, resource, simulate=simulate, gpus=gpus, evidence_format=evidence_format)
    if resource is not None or simulate is not None:
        raise UsageError("--resource and --simulate go with --kbs URL")
    if kek is not None:
        return read_kek(kek)
    if required:
        raise UsageError("give --kek FILE, or --kbs URL --resource REPO/TYPE/TAG")
    return None


def unseal_cmd(
    sealed: Annotated[Path, typer.Argument(help="Sealed model directory.")],
    *,
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory to create (RAM-backed).")],
    kek: Annotated[Path | None, typer.Option("--kek", help="KEK file (from `ccai keys new`).")] = None,
    kbs: KbsOpt = None,
    resource: ResourceOpt = None,
    simulate: SimulateOpt = None,
    gpus: GpusOpt = None,
    evidence_format: EvidenceFormatOpt = "composite",
    force_disk: Annotated[
        bool,
        typer.Option("--force-disk", help="Allow a non-RAM-backed output: plaintext weights on disk."),
    ] = False,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Decrypt a sealed model into a plain model directory (on tmpfs unless --force-disk)."""
    read_header(sealed)  # a missing or foreign directory is reported before any key is fetched
    key = _key(kek, kbs, resource=resource, simulate=simulate, gpus=gpus, evidence_format=evidence_format)
    with _bar("unsealing", enabled=not json_out) as progress:
        manifest = unseal_to_directory(
            sealed, output, key, force_disk=force_disk, threads=threads, progress=progress
        )
    if json_out:
        print_json({"output": str(output), **_manifest_dict(manifest, tensors=False)})
    else:
        console.print(
            f"unsealed {len(manifest.files)} files ({manifest.total_size:,} bytes) into {output}; "
            "every file matched its SHA-256"
        )


@sealed_app.command("inspect")
def inspect(
    sealed: Annotated[Path, typer.Argument(help="Sealed model directory.")],
    *,
    kek: Annotated[
        Path | None, typer.Option("--kek", help="KEK file; without it only the public header is shown.")
    ] = None,
    kbs: KbsOpt = None,
    resource: ResourceOpt = None,
    simulate: SimulateOpt = None,
    gpus: GpusOpt = None,
    evidence_format: EvidenceFormatOpt = "composite",
    tensors: Annotated[bool, typer.Option("--tensors", help="List every tensor (with --json).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show a sealed model: public header, and with --kek (or --kbs) the decrypted manifest."""
    header = read_header(sealed)
    out: dict[str, Any] = _header_dict(header)
    key = _key(
        kek,
        kbs,
        resource=resource,
        simulate=simulate,
        gpus=gpus,
        evidence_format=evidence_format,
        required=False,
    )
    manifest = read_manifest(sealed, key) if key is not None else None
    if manifest is not None:
        out.update(_manifest_dict(manifest, tensors=tensors))
    if json_out:
        print_json(out)
        return
    for key in ("format", "version", "model_id", "chunk_size", "kid"):
        console.print(f"{key:>10}: {out[key]}")
    if manifest is None:
        console.print("(pass --kek to decrypt the manifest)")
        return
    console.print(f"{'size':>10}: {manifest.total_size:,} bytes in {len(manifest.files)} files")
    console.print(_files_table(manifest))


@sealed_app.command("rewrap")
def rewrap_cmd(
    sealed: Annotated[Path, typer.Argument(help="Sealed model directory.")],
    *,
    kek: Annotated[Path, typer.Option("--kek", help="The KEK that wraps the data key now.")],
    new_kek_file: Annotated[Path, typer.Option("--new-kek", help="The KEK to wrap it with.")],
    json_out: JsonOpt = False,
) -> None:
    """Rotate the KEK: re-wrap the model's data key; the encrypted weights are not rewritten."""
    old, new = read_kek(kek), read_kek(new_kek_file)
    if hmac.compare_digest(old.key, new.key):
        raise UsageError("the new KEK is the old KEK")
    header = rewrap(sealed, old, new)
    if json_out:
        print_json(_header_dict(header))
    else:
        console.print(f"data key of model {header.model_id.hex()} now wrapped by KEK {header.kid}")

"""Real CPU TEE quotes through Linux configfs-tsm (``/sys/kernel/config/tsm/report``).

Both TDX (``tdx_guest``) and SEV-SNP (``sev_guest``) guests expose the same interface
(kernel ``Documentation/ABI/testing/configfs-tsm-report``):

1. ``mkdir report/<name>`` — the kernel creates the attribute files;
2. read ``generation`` (a counter the kernel bumps on every write to ``inblob`` or an option);
3. write options (``privlevel`` for SNP), then ``inblob`` — the 64 report_data bytes, in one write;
4. read ``outblob`` (the quote / report; reading it runs the TEE), ``provider``, ``auxblob`` (SNP:
   the host's certificate table with the VCEK, ASK, ARK);
5. read ``generation`` again: it must equal the first value plus the number of writes, otherwise
   another writer changed the entry in between and the outblob may answer someone else's
   inblob — try again in a fresh entry (go-configfs-tsm does the same);
6. ``rmdir report/<name>``.

The file operations go through :class:`TsmFilesystem`, so the logic runs unchanged against a
directory that mimics configfs (the tests do that, including a racing writer).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.serialization import Encoding

from ccai._binary import Reader
from ccai.errors import DeviceError, DeviceNotSupported, DriverNotFound, MalformedEvidence, UsageError
from ccai.tee._backend import CpuQuote

__all__ = [
    "CONFIGFS_TSM_REPORT",
    "PROVIDER_TEE",
    "ConfigfsTsm",
    "LinuxTsmFilesystem",
    "TsmFilesystem",
    "TsmReport",
    "parse_snp_certificate_table",
]

#: Where the kernel mounts the report interface.
CONFIGFS_TSM_REPORT = Path("/sys/kernel/config/tsm/report")
#: configfs-tsm provider name → ccai's TEE type.
PROVIDER_TEE = {"tdx_guest": "tdx", "sev_guest": "snp"}

# SEV-SNP certificate-table GUIDs (GHCB spec, "SNP Extended Guest Request"; cpu-evidence.md §3.3).
_CERT_GUIDS = {
    uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd"): "vcek",
    uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1"): "vlek",
    uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782"): "ask",
    uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae"): "ark",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TsmReport:
    """One configfs-tsm report, as read back from the entry.

    Attributes:
        provider: The ``provider`` attribute (``tdx_guest``, ``sev_guest``).
        outblob: The quote / report.
        auxblob: The auxiliary blob (SNP certificate table), or ``None``.
        generation: The ``generation`` value the read was checked against.
    """

    provider: str
    outblob: bytes
    auxblob: bytes | None
    generation: int


class TsmFilesystem(Protocol):
    """The file operations configfs-tsm needs (a real configfs, or a directory that mimics it)."""

    def is_dir(self, path: Path) -> bool:
        """Whether ``path`` is a directory."""
        ...

    def mkdir(self, path: Path) -> None:
        """Create the report entry ``path``."""
        ...

    def rmdir(self, path: Path) -> None:
        """Remove the report entry ``path``."""
        ...

    def read(self, path: Path) -> bytes:
        """Read a whole attribute (``FileNotFoundError`` when absent)."""
        ...

    def write(self, path: Path, data: bytes) -> None:
        """Write an attribute in one ``write`` call."""
        ...


class LinuxTsmFilesystem:
    """The real file operations (os calls; configfs needs each attribute written in one call)."""

    def is_dir(self, path: Path) -> bool:
        """Whether ``path`` is a directory."""
        return path.is_dir()

    def mkdir(self, path: Path) -> None:
        """``mkdir`` (mode 0700)."""
        os.mkdir(path, 0o700)

    def rmdir(self, path: Path) -> None:
        """``rmdir``."""
        os.rmdir(path)

    def read(self, path: Path) -> bytes:
        """Read the whole attribute."""
        return path.read_bytes()

    def write(self, path: Path, data: bytes) -> None:
        """Write ``data`` with a single ``write(2)``."""
        fd = os.open(path, os.O_WRONLY)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(f"short write to {path}")
        finally:
            os.close(fd)


class ConfigfsTsm:
    """Collect CPU TEE evidence through configfs-tsm.

    Args:
        root: The ``tsm/report`` directory (default :data:`CONFIGFS_TSM_REPORT`).
        fs: File operations (default: the real ones).
        attempts: How many fresh entries to try when the generation check detects a race.
    """

    def __init__(
        self, root: Path = CONFIGFS_TSM_REPORT, *, fs: TsmFilesystem | None = None, attempts: int = 3
    ) -> None:
        if attempts < 1:
            raise UsageError("attempts must be at least 1")
        self.root = Path(root)
        self._fs: TsmFilesystem = fs if fs is not None else LinuxTsmFilesystem()
        self._attempts = attempts

    def available(self) -> bool:
        """Whether the report interface exists on this machine."""
        return self._fs.is_dir(self.root)

    def report(self, report_data: bytes, *, privlevel: int | None = None) -> TsmReport:
        """Get a report for ``report_data`` (steps 1–6 of the module docstring).

        Args:
            report_data: Exactly 64 bytes for the quote's REPORTDATA / REPORT_DATA.
            privlevel: SNP VMPL to request (written to ``privlevel``), or ``None``.

        Returns:
            The provider, outblob, auxblob and the checked generation.

        Raises:
            UsageError: ``report_data`` is not 64 bytes.
            DriverNotFound: there is no configfs-tsm report interface.
            DeviceNotSupported: the entry cannot be created (permissions) or lacks attributes.
            DeviceError: the TEE failed, or every attempt raced with another writer.
        """
        if len(report_data) != 64:
            raise UsageError("report_data must be 64 bytes", expected=64, actual=len(report_data))
        if not self.available():
            raise DriverNotFound(
                f"no configfs-tsm report interface at {self.root}",
                hint="run inside a TDX or SEV-SNP guest with the tdx_guest / sev_guest driver loaded "
                "and configfs mounted (mount -t configfs none /sys/kernel/config); "
                "or use --simulate tdx|snp",
            )
        last: tuple[int, int] | None = None
        for _ in range(self._attempts):
            entry = self.root / f"ccai-{os.getpid()}-{secrets.token_hex(6)}"
            try:
                self._fs.mkdir(entry)
            except PermissionError:
                raise DeviceNotSupported(
                    f"cannot create a configfs-tsm report entry in {self.root}: permission denied",
                    hint="run as root (or with CAP_SYS_ADMIN) inside the guest",
                ) from None
            except OSError as exc:
                raise DeviceError(f"cannot create configfs-tsm report entry {entry}: {exc}") from None
            try:
                result, got, expected = self._one(entry, report_data, privlevel)
            finally:
                # The entry is private and holds no secrets; a leftover one is harmless.
                with contextlib.suppress(OSError):
                    self._fs.rmdir(entry)
            if result is not None:
                return result
            last = (expected, got)
        raise DeviceError(
            f"configfs-tsm generation changed during every one of {self._attempts} attempts: "
            "another writer is using the report entry",
            step="generation check",
            expected=last[0] if last else None,
            actual=last[1] if last else None,
        )

    def _one(
        self, entry: Path, report_data: bytes, privlevel: int | None
    ) -> tuple[TsmReport | None, int, int]:
        fs = self._fs
        try:
            expected = _read_int(fs, entry / "generation")
            if privlevel is not None:
                fs.write(entry / "privlevel", f"{int(privlevel)}\n".encode())
                expected += 1
            fs.write(entry / "inblob", report_data)
            expected += 1
            outblob = fs.read(entry / "outblob")
            provider = fs.read(entry / "provider").decode("ascii", "replace").strip()
            try:
                auxblob: bytes | None = fs.read(entry / "auxblob") or None
            except FileNotFoundError:
                auxblob = None
            generation = _read_int(fs, entry / "generation")
        except FileNotFoundError as exc:
            raise DeviceNotSupported(
                f"configfs-tsm entry lacks an attribute: {exc.filename}",
                hint="the kernel's configfs-tsm is too old or no TSM provider is registered",
            ) from None
        except OSError as exc:
            raise DeviceError(f"configfs-tsm report failed: {exc}", step="outblob") from None
        if generation != expected:
            return None, generation, expected
        if not outblob:
            raise DeviceError("configfs-tsm returned an empty outblob", step="outblob")
        return (
            TsmReport(provider=provider, outblob=outblob, auxblob=auxblob, generation=generation),
            generation,
            expected,
        )

    def quote(self, report_data: bytes) -> CpuQuote:
        """Collect a TDX quote or SNP report for ``report_data`` as :class:`CpuQuote`.

        Raises:
            DriverNotFound, DeviceNotSupported, DeviceError: see :meth:`report`; also an unknown provider.
            MalformedEvidence: the SNP certificate table in the auxblob is malformed.
        """
        report = self.report(report_data)
        tee = PROVIDER_TEE.get(report.provider.split(".")[0])
        if tee is None:
            raise DeviceNotSupported(
                f"configfs-tsm provider {report.provider!r} is not TDX or SEV-SNP",
                expected=sorted(PROVIDER_TEE),
                actual=report.provider,
            )
        certificates = None
        if tee == "snp" and report.auxblob:
            from ccai.evidence import load_certificate

            table = parse_snp_certificate_table(report.auxblob)
            pems = [
                load_certificate(table[name], what=f"SEV-SNP certificate table entry {name}").public_bytes(
                    Encoding.PEM
                )
                for name in ("vcek", "vlek", "ask", "ark")
                if name in table
            ]
            certificates = b"".join(pems) or None
        return CpuQuote(
            type=tee, evidence=report.outblob, provider=report.provider, certificates=certificates
        )


def _read_int(fs: TsmFilesystem, path: Path) -> int:
    text = fs.read(path).decode("ascii", "replace").strip()
    try:
        return int(text)
    except ValueError:
        raise DeviceError(f"configfs-tsm {path.name} is not a number", actual=text) from None


def parse_snp_certificate_table(blob: bytes) -> dict[str, bytes]:
    """Parse the SEV-SNP certificate table (the configfs-tsm ``auxblob`` of ``sev_guest``).

    Layout (GHCB spec, SNP Extended Guest Request): entries of GUID (16 bytes) ‖ offset (u32 LE)
    ‖ length (u32 LE), ended by an all-zero entry; offsets count from the start of the blob.

    Args:
        blob: The table.

    Returns:
        ``{"vcek"|"vlek"|"ask"|"ark": DER}`` for the GUIDs ccai knows (others are skipped).

    Raises:
        MalformedEvidence: no terminator, or an entry pointing outside the blob.
    """
    r = Reader(blob, what="SEV-SNP certificate table")
    out: dict[str, bytes] = {}
    while True:
        guid = r.take(16, "GUID")
        offset = r.u32le("offset")
        length = r.u32le("length")
        if not any(guid) and offset == 0 and length == 0:
            return out
        if offset + length > len(blob):
            raise MalformedEvidence(
                "SEV-SNP certificate table entry points outside the table",
                step="parse",
                expected=f"<= {len(blob)}",
                actual=offset + length,
            )
        name = _CERT_GUIDS.get(uuid.UUID(bytes=guid))
        if name is not None:
            out[name] = blob[offset : offset + length]

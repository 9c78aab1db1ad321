"""configfs-tsm collection against a directory that mimics the kernel's configfs layout.

The fake kernel keeps real files in a temporary directory and reacts as the kernel does: ``mkdir``
creates the attributes, every write to ``inblob``/``privlevel`` bumps ``generation``, and reading
``outblob`` produces a quote for the current ``inblob`` (from the virtual TEE). A racing writer
bumps ``generation`` behind the collector's back.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from ccai.errors import DeviceError, DeviceNotSupported, DriverNotFound, MalformedEvidence, UsageError
from ccai.evidence import parse_tdx_quote
from ccai.tee import ConfigfsTsm, parse_snp_certificate_table
from ccai.virtual import VirtualCpuTee


class FakeTsmKernel:
    """A TsmFilesystem over a real directory, with the kernel's reactions to reads and writes."""

    def __init__(
        self, provider: str, quote: Callable[[bytes], bytes], *, races: int = 0, aux: bytes = b""
    ) -> None:
        self.provider = provider
        self.quote = quote
        self.races = races
        self.aux = aux
        self.created: list[Path] = []

    def is_dir(self, path: Path) -> bool:
        return path.is_dir()

    def mkdir(self, path: Path) -> None:
        path.mkdir()
        self.created.append(path)
        (path / "generation").write_text("0\n")
        (path / "provider").write_text(self.provider + "\n")
        for name in ("inblob", "outblob", "privlevel"):
            (path / name).write_bytes(b"")
        if self.aux:
            (path / "auxblob").write_bytes(self.aux)

    def rmdir(self, path: Path) -> None:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()

    def _bump(self, path: Path) -> None:
        gen = path.parent / "generation"
        gen.write_text(f"{int(gen.read_text()) + 1}\n")

    def read(self, path: Path) -> bytes:
        if path.name == "outblob":
            out = self.quote((path.parent / "inblob").read_bytes())
            path.write_bytes(out)
            if self.races:  # another process writes inblob between our write and our read-back
                self.races -= 1
                self._bump(path)
            return out
        return path.read_bytes()

    def write(self, path: Path, data: bytes) -> None:
        if not path.exists():
            raise FileNotFoundError(2, "No such file", str(path))
        path.write_bytes(data)
        self._bump(path)


@pytest.fixture
def tdx(ccai_home: Path) -> VirtualCpuTee:
    return VirtualCpuTee.create(home=ccai_home, tee="tdx")


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "tsm" / "report"
    root.mkdir(parents=True)
    return root


def test_report_roundtrip_and_cleanup(tmp_path: Path, tdx: VirtualCpuTee) -> None:
    kernel = FakeTsmKernel("tdx_guest", lambda inblob: tdx.quote(inblob).evidence)
    tsm = ConfigfsTsm(_root(tmp_path), fs=kernel)
    data = bytes(range(64))
    quote = tsm.quote(data)
    assert quote.type == "tdx" and quote.provider == "tdx_guest" and not quote.simulated
    assert parse_tdx_quote(quote.evidence).body.report_data == data
    assert len(kernel.created) == 1 and not kernel.created[0].exists()  # entry removed


def test_generation_race_is_retried_in_a_fresh_entry(tmp_path: Path, tdx: VirtualCpuTee) -> None:
    kernel = FakeTsmKernel("tdx_guest", lambda inblob: tdx.quote(inblob).evidence, races=1)
    report = ConfigfsTsm(_root(tmp_path), fs=kernel).report(bytes(64))
    assert len(kernel.created) == 2  # first entry raced, second succeeded
    assert report.generation == 1


def test_generation_mismatch_every_time_fails(tmp_path: Path, tdx: VirtualCpuTee) -> None:
    kernel = FakeTsmKernel("tdx_guest", lambda inblob: tdx.quote(inblob).evidence, races=5)
    with pytest.raises(DeviceError, match="generation changed") as info:
        ConfigfsTsm(_root(tmp_path), fs=kernel, attempts=3).report(bytes(64))
    assert info.value.expected == 1 and info.value.actual == 2
    assert all(not p.exists() for p in kernel.created)


def test_privlevel_counts_as_a_write(tmp_path: Path, tdx: VirtualCpuTee) -> None:
    kernel = FakeTsmKernel("sev_guest", lambda inblob: tdx.quote(inblob).evidence)
    report = ConfigfsTsm(_root(tmp_path), fs=kernel).report(bytes(64), privlevel=0)
    assert report.generation == 2


def test_absent_interface_is_driver_not_found(tmp_path: Path) -> None:
    with pytest.raises(DriverNotFound, match="configfs-tsm"):
        ConfigfsTsm(tmp_path / "nope").report(bytes(64))


def test_real_filesystem_layer_on_a_plain_directory(tmp_path: Path) -> None:
    # The real os-level layer against a plain directory: mkdir works but no kernel creates the
    # attributes, which must read as "not supported", not as a crash.
    with pytest.raises(DeviceNotSupported, match="lacks an attribute"):
        ConfigfsTsm(_root(tmp_path)).report(bytes(64))


def test_report_data_must_be_64_bytes(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        ConfigfsTsm(_root(tmp_path)).report(bytes(32))


def test_unknown_provider(tmp_path: Path, tdx: VirtualCpuTee) -> None:
    kernel = FakeTsmKernel("arm_cca_guest", lambda inblob: tdx.quote(inblob).evidence)
    with pytest.raises(DeviceNotSupported, match="not TDX or SEV-SNP"):
        ConfigfsTsm(_root(tmp_path), fs=kernel).quote(bytes(64))


def _table(entries: list[tuple[str, bytes]]) -> bytes:
    header_size = 24 * (len(entries) + 1)
    header, body = b"", b""
    for guid, blob in entries:
        header += uuid.UUID(guid).bytes + struct.pack("<II", header_size + len(body), len(blob))
        body += blob
    return header + bytes(24) + body


def test_snp_certificate_table_from_auxblob(tmp_path: Path, ccai_home: Path) -> None:
    snp = VirtualCpuTee.create(home=ccai_home, tee="snp")
    from datetime import UTC, datetime

    coll = snp.snp_collateral(datetime(2026, 1, 1, tzinfo=UTC))
    assert coll.vcek and coll.ask and coll.ark
    aux = _table(
        [
            ("63da758d-e664-4564-adc5-f4b93be8accd", coll.vcek),
            ("4ab7b379-bbac-4fe4-a02f-05aef327c782", coll.ask),
            ("c0b406a4-a803-4952-9743-3fb6014cd0ae", coll.ark),
            ("00000000-0000-0000-0000-00000000abcd", b"unknown"),
        ]
    )
    assert parse_snp_certificate_table(aux) == {"vcek": coll.vcek, "ask": coll.ask, "ark": coll.ark}
    kernel = FakeTsmKernel("sev_guest", lambda inblob: snp.quote(inblob).evidence, aux=aux)
    quote = ConfigfsTsm(_root(tmp_path), fs=kernel).quote(bytes(64))
    assert quote.type == "snp" and quote.certificates is not None
    assert quote.certificates.count(b"BEGIN CERTIFICATE") == 3


@pytest.mark.parametrize("blob", [b"", bytes(23), uuid.uuid4().bytes + struct.pack("<II", 10, 1000)])
def test_snp_certificate_table_malformed(blob: bytes) -> None:
    with pytest.raises(MalformedEvidence):
        parse_snp_certificate_table(blob)

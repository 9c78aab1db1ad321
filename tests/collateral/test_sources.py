"""RIM service and OCSP clients against the dev collateral server on loopback; cache, chain, bundle."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509 import ocsp

from ccai.collateral import (
    BundleSource,
    CachedSource,
    CollateralBundle,
    CollateralCache,
    GpuCollateral,
    OcspClient,
    RimDirectory,
    RimServiceClient,
    SourceChain,
    build_ocsp_request,
    default_gpu_source,
    dump_bundle,
    inspect_bundle,
    load_bundle,
    new_ocsp_nonce,
    ocsp_key,
    read_bundle,
    write_bundle,
)
from ccai.errors import CollateralUnavailable, MalformedEvidence, UnsupportedEvidence, UsageError
from ccai.verify._ocsp_check import OcspCertStatus, check_ocsp

RIM_ID = "NV_GPU_DRIVER_GH100_550.144.03"
RIM_XML = b"<SoftwareIdentity>test</SoftwareIdentity>"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- network clients against the real server ---------------------------------------------------


def test_rim_service_client_fetches_and_lists(server: str) -> None:
    client = RimServiceClient(server)
    assert client.rim(RIM_ID) == RIM_XML
    assert client.ids() == [RIM_ID]
    client.close()


def test_rim_service_not_found_is_unavailable(server: str) -> None:
    with pytest.raises(CollateralUnavailable, match="not found"):
        RimServiceClient(server).rim("NV_GPU_DRIVER_GH100_1.2.3")


def test_rim_ids_that_could_escape_are_refused(server: str) -> None:
    for bad in ("../etc/passwd", "a/b", "", ".hidden"):
        with pytest.raises(UsageError):
            RimServiceClient(server).rim(bad)


def test_network_errors_are_collateral_unavailable() -> None:
    url = _closed_port()
    with pytest.raises(CollateralUnavailable, match="ConnectError"):
        RimServiceClient(url, timeout=2).rim(RIM_ID)


def test_ocsp_client_good_and_revoked_via_real_responder(server: str, pki: Any) -> None:
    client = OcspClient(f"{server}/ocsp")
    nonce = new_ocsp_nonce()
    der = client.ocsp(pki.good, pki.ca, nonce=nonce)
    now = ocsp.load_der_ocsp_response(der).this_update_utc
    status = check_ocsp(der, pki.good, pki.ca, now=now, nonce=nonce)
    assert status.status is OcspCertStatus.GOOD and status.nonce_checked
    revoked = client.ocsp(pki.held, pki.ca, nonce=None)
    status = check_ocsp(revoked, pki.held, pki.ca, now=now, allow_revocation_reasons={"certificateHold"})
    assert status.revocation_reason == "certificateHold"
    # NVIDIA's responder listens on "/": so does the dev server.
    assert OcspClient(server).ocsp(pki.good, pki.ca, nonce=None)


def test_ocsp_client_unknown_issuer_is_unavailable(server: str, pki: Any) -> None:
    with pytest.raises(CollateralUnavailable, match="unauthorized"):
        OcspClient(f"{server}/ocsp").ocsp(pki.ca, pki.root, nonce=None)


def test_ocsp_client_network_error(pki: Any) -> None:
    with pytest.raises(CollateralUnavailable, match="ConnectError"):
        OcspClient(_closed_port(), timeout=2).ocsp(pki.good, pki.ca, nonce=None)


# -- cache ---------------------------------------------------------------------------------------


class _Counting:
    def __init__(self, pki: Any) -> None:
        self.pki = pki
        self.calls = 0

    def rim(self, rim_id: str) -> bytes:
        self.calls += 1
        return RIM_XML

    def ocsp(self, cert: Any, issuer: Any, *, nonce: bytes | None) -> bytes:
        self.calls += 1
        return self.pki.responder().respond(build_ocsp_request(cert, issuer, nonce=nonce))


@pytest.mark.parametrize("on_disk", [False, True])
def test_cache_serves_until_expiry(pki: Any, tmp_path: Path, on_disk: bool) -> None:
    cache = CollateralCache(tmp_path / "cache" if on_disk else None, rim_ttl=timedelta(hours=2))
    inner = _Counting(pki)
    clock = [NOW]
    source = CachedSource(inner, cache, clock=lambda: clock[0])
    assert source.rim(RIM_ID) == RIM_XML
    assert source.rim(RIM_ID) == RIM_XML
    assert inner.calls == 1
    first = source.ocsp(pki.good, pki.ca, nonce=None)
    assert source.ocsp(pki.good, pki.ca, nonce=None) == first
    assert inner.calls == 2
    # The OCSP response's nextUpdate is NOW + 1 h: at that instant it is no longer served.
    clock[0] = NOW + timedelta(hours=1)
    source.ocsp(pki.good, pki.ca, nonce=None)
    assert inner.calls == 3
    assert source.rim(RIM_ID) == RIM_XML and inner.calls == 3  # RIM still within its 2 h
    clock[0] = NOW + timedelta(hours=2)
    source.rim(RIM_ID)
    assert inner.calls == 4
    if on_disk:
        # A second cache object over the same directory sees the entries; expired ones are not served.
        again = CollateralCache(tmp_path / "cache")
        assert again.get_rim(RIM_ID, now=NOW + timedelta(hours=2)) == RIM_XML
        assert again.get_rim(RIM_ID, now=NOW + timedelta(days=2)) is None


def test_cache_never_stores_an_already_stale_response(pki: Any) -> None:
    cache = CollateralCache()
    der = pki.responder().respond(build_ocsp_request(pki.good, pki.ca, nonce=None))
    assert not cache.put_ocsp(ocsp_key(pki.good), der, now=NOW + timedelta(hours=3))
    assert cache.get_ocsp(ocsp_key(pki.good), now=NOW) is None
    assert not cache.put_ocsp("x", b"garbage", now=NOW)


def test_corrupt_disk_entry_is_a_miss(tmp_path: Path) -> None:
    cache = CollateralCache(tmp_path)
    cache.put_rim(RIM_ID, RIM_XML, now=NOW)
    for file in tmp_path.glob("*.json"):
        file.write_text("{not json")
    assert CollateralCache(tmp_path).get_rim(RIM_ID, now=NOW) is None
    assert not list(tmp_path.glob("*.json"))


# -- directory, chain --------------------------------------------------------------------------


def test_rim_directory_round_trip(tmp_path: Path) -> None:
    directory = RimDirectory(tmp_path / "rims")
    path = directory.store(RIM_ID, RIM_XML)
    assert path.name == f"{RIM_ID}.xml"
    assert directory.rim(RIM_ID) == RIM_XML
    assert directory.ids() == [RIM_ID]
    with pytest.raises(CollateralUnavailable, match="not in directory"):
        directory.rim("NV_GPU_VBIOS_1010_0200_882_96005E0001")


def test_chain_falls_through_and_reports_every_reason(tmp_path: Path, server: str) -> None:
    chain = SourceChain([RimDirectory(tmp_path), RimServiceClient(server)])
    assert chain.rim(RIM_ID) == RIM_XML
    with pytest.raises(CollateralUnavailable) as info:
        chain.rim("NV_GPU_DRIVER_GH100_9.9.9")
    assert "not in directory" in str(info.value.actual) and "not found" in str(info.value.actual)


def test_nested_chain_keeps_the_transport_error_and_url(tmp_path: Path) -> None:
    # The CLI nests chains (command-line RIMs, then the default sources): the innermost detail —
    # connection refused, and where — must survive to the message people read.
    inner = SourceChain([RimServiceClient("http://127.0.0.1:1")])
    with pytest.raises(CollateralUnavailable) as info:
        SourceChain([RimDirectory(tmp_path), inner]).rim(RIM_ID)
    actual = str(info.value.actual)
    assert "not in directory" in actual and "ConnectError" in actual and "127.0.0.1:1/v1/rim/" in actual


def test_nested_chains_say_each_reason_once(tmp_path: Path) -> None:
    # Regression: every level of nesting repeated the inner chain's message, reasons and RIM id.
    service = RimServiceClient("http://127.0.0.1:1")
    inner = SourceChain([RimDirectory(tmp_path), SourceChain([service, OcspClient("http://127.0.0.1:1")])])
    chain = SourceChain([inner, SourceChain([RimDirectory(tmp_path), inner])])
    with pytest.raises(CollateralUnavailable) as info:
        chain.rim(RIM_ID)
    text = info.value.diagnostics()
    assert text.count("not available from any source") == 1 and text.count("not in directory") == 1
    assert text.count("ConnectError") == 1 and text.count(RIM_ID) == 3  # headline, file, URL
    assert "OCSP responder" not in text  # it never serves RIMs: no reason to list
    actual = str(info.value.actual)
    assert "\n" not in actual and actual.startswith("not in directory")
    with pytest.raises(CollateralUnavailable) as none:
        SourceChain([]).rim(RIM_ID)
    assert none.value.actual == "no sources configured"


def test_offline_default_source_with_nothing_available(pki: Any) -> None:
    source = default_gpu_source(offline=True)
    with pytest.raises(CollateralUnavailable):
        source.rim(RIM_ID)
    with pytest.raises(CollateralUnavailable):
        source.ocsp(pki.good, pki.ca, nonce=None)


# -- bundle --------------------------------------------------------------------------------------


def _bundle(pki: Any) -> CollateralBundle:
    der = pki.responder().respond(build_ocsp_request(pki.held, pki.ca, nonce=None))
    return CollateralBundle(
        gpu=GpuCollateral(rims={RIM_ID: RIM_XML}, ocsp={ocsp_key(pki.held): der}),
        cpu={"tdx": {"note": "reserved"}},
        created_at=NOW,
    )


def test_bundle_round_trip_and_source(pki: Any, tmp_path: Path) -> None:
    bundle = _bundle(pki)
    path = write_bundle(tmp_path / "b.json", bundle)
    loaded = read_bundle(path)
    assert loaded == load_bundle(dump_bundle(bundle))
    assert dict(loaded.gpu.rims) == {RIM_ID: RIM_XML}
    assert loaded.cpu == {"tdx": {"note": "reserved"}}
    assert loaded.created_at == NOW
    source = BundleSource(loaded, clock=lambda: NOW)
    assert source.rim(RIM_ID) == RIM_XML
    assert source.ocsp(pki.held, pki.ca, nonce=None) == bundle.gpu.ocsp[ocsp_key(pki.held)]
    with pytest.raises(CollateralUnavailable, match="not in the collateral bundle"):
        source.ocsp(pki.good, pki.ca, nonce=None)
    # Past nextUpdate the bundle stops answering, so a chain would move on to the network.
    with pytest.raises(CollateralUnavailable, match="stale"):
        BundleSource(loaded, clock=lambda: NOW + timedelta(hours=2)).ocsp(pki.held, pki.ca, nonce=None)


def test_bundle_inspect(pki: Any) -> None:
    summary = inspect_bundle(_bundle(pki), now=NOW)
    json.dumps(summary)
    (entry,) = summary["gpu"]["ocsp"]
    assert entry["status"] == "revoked"
    assert entry["revocation_reason"] == "certificateHold"
    assert entry["this_update"] == NOW.isoformat()
    assert entry["next_update"] == (NOW + timedelta(hours=1)).isoformat()
    assert entry["current"] is True
    (rim,) = summary["gpu"]["rims"]
    assert rim["id"] == RIM_ID and "error" in rim  # not a real RIM document
    assert summary["gpu"]["usable_until"] == (NOW + timedelta(hours=1)).isoformat()


@pytest.mark.parametrize(
    ("content", "error", "match"),
    [
        (b"not json", MalformedEvidence, "not JSON"),
        (b"[]", MalformedEvidence, "version"),
        (b'{"version": "1"}', MalformedEvidence, "integer"),
        (b'{"version": 2}', UnsupportedEvidence, "version not supported"),
        (b'{"version": 1, "gpu": {"rims": {"x": "***"}}}', MalformedEvidence, "base64"),
        (b'{"version": 1, "gpu": {"rimz": {}}}', MalformedEvidence, "rimz"),
        (b'{"version": 1, "gpu": {"ocsp": {"k": {}}}}', MalformedEvidence, "response"),
    ],
)
def test_bundle_errors(content: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        load_bundle(content)


def test_unreadable_bundle_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        read_bundle(tmp_path / "missing.json")

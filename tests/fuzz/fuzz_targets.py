"""Fuzz targets: one per parser and per verifier entry point, each ``target(data: bytes) -> None``.

A target feeds the bytes to one entry point of ccai. Any :class:`ccai.errors.Error` is the
documented answer to hostile input and is swallowed; anything else propagates and is a crash.
Seed corpora are built at run time from the real vectors in ``tests/vectors`` (or ``$CCAI_VECTORS``)
and, where no vector exists (sealed headers, tokens, bundles), from objects ccai itself writes with
fixed keys, so the same seeds come back on every run.

Verifier targets take the pinned verification time of their vector (tests/vectors PROVENANCE) so a
mutated input is judged exactly as the real one would be, never by the wall clock.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from ccai.errors import Error

if TYPE_CHECKING:
    from ccai.virtual import OcspResponder

__all__ = ["TARGETS", "VECTORS", "Target"]

VECTORS = Path(os.environ.get("CCAI_VECTORS") or Path(__file__).resolve().parents[1] / "vectors")

_NVT0 = "nvtrust/NVIDIA_nvtrust@0ab869a/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples"
_NVT = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples"
_PPCIE = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/ppcie-verifier-sdk-cpp/tests/data"
_UT = "nvtrust/NVIDIA_attestation-sdk@73c032e/nv-attestation-sdk-cpp/unit-tests/testdata"
_TRU = "nvtrust/confidential-containers_trustee@b28d3fe/deps/verifier/test_data/nvidia"
_NONCE_4CFF = bytes.fromhex("4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e")
_PIN_2024 = datetime(2024, 6, 1, tzinfo=UTC)  # H100 2023 vector with its test RIMs
_PIN_2025 = datetime(2025, 6, 1, tzinfo=UTC)  # NVIDIA RIMs of the attestation SDK
_PIN_TDX = datetime(2025, 6, 20, tzinfo=UTC)  # dcap-qvl tdx_quote + collateral
_PIN_SNP = datetime(2025, 1, 1, tzinfo=UTC)  # virtee-sev Milan report + VCEK
_DRIVER_545 = "NV_GPU_DRIVER_GH100_545.00"
_VBIOS_5E01 = "NV_GPU_VBIOS_1010_0200_882_96005E0001"


@dataclass(frozen=True, slots=True)
class Target:
    """A fuzz target and its seed corpus."""

    name: str
    run: Callable[[bytes], None]
    corpus: Callable[[], list[bytes]]
    description: str


def _read(rel: str) -> bytes:
    return (VECTORS / rel).read_bytes()


def _glob(pattern: str) -> list[Path]:
    return sorted(VECTORS.glob(pattern))


def _splice(real: bytes, data: bytes) -> bytes:
    """``data`` written over the start of ``real``: short inputs change the first fields, long
    inputs replace the whole thing, and every input stays a near-real document."""
    return data + real[len(data) :]


# -- seeds -----------------------------------------------------------------------------------------


@functools.cache
def _gpu_reports() -> list[bytes]:
    from ccai.evidence import load_report

    names = ("attestationReport.txt", "hopperAttestationReport.txt", "blackwellAttestationReport.txt")
    paths = [p for name in names for p in _glob(f"nvtrust/**/{name}")]
    paths += _glob("nvtrust/**/switchAttestationReport.txt")
    return [load_report(p.read_bytes()) for p in paths]


def _opaque_seeds() -> list[bytes]:
    from ccai.evidence import parse_attestation_report

    return [parse_attestation_report(r).opaque_data.raw for r in _gpu_reports()]


def _cert_chains() -> list[bytes]:
    return [
        p.read_bytes() for p in [*_glob("nvtrust/**/*CertChain.txt"), *_glob("nvtrust/**/gpuAkCertChain.txt")]
    ]


def _evidence_json_seeds() -> list[bytes]:
    return [_read(f"{_PPCIE}/gpu_evidence.json"), _read(f"{_PPCIE}/switch_evidence.json")]


def _rim_seeds() -> list[bytes]:
    paths = [
        *_glob(f"{_UT}/*.xml"),
        VECTORS / _NVT / "Driver_RIM_test_no_gpu.swidtag",
        VECTORS / _NVT / "1010_0200_882_96005E0001_PROD.swidtag",
    ]
    return [p.read_bytes() for p in paths if p.is_file()]


def _tdx_quote_from(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.name == "quote-report.json":
        return bytes.fromhex(json.loads(raw)["quote"])
    if path.suffix == ".txt":
        return bytes.fromhex(raw.decode().strip())
    return raw


def _tdx_quotes() -> list[bytes]:
    paths = [
        VECTORS / "cpu/tdx/dcap-qvl/tdx_quote",
        VECTORS / "cpu/tdx/go-tdx-guest/quote_v5_sample.dat",
        VECTORS / "cpu/tdx/trustee/tdx_quote_4.dat",
        VECTORS / "cpu/tdx/dstack/quote-report.json",
    ]
    return [_tdx_quote_from(p) for p in paths]


def _event_log_json_seeds() -> list[bytes]:
    return [json.loads(_read("cpu/tdx/dstack/quote-report.json"))["event_log"].encode()]


def _snp_reports() -> list[bytes]:
    return [
        bytes.fromhex(_read("cpu/snp/virtee-sev/report_milan.hex").decode().strip()),
        _read("cpu/snp/trustee/test-report.bin"),
        _read("cpu/snp/go-sev-guest/attestation.bin")[:1184],
        _read("cpu/snp/teekit/sev-gcp.bin")[:1184],
    ]


@functools.cache
def _tdx_collateral_text() -> str:
    return _read("cpu/tdx/dcap-qvl/tdx_quote_collateral.json").decode()


def _collateral_bundle_seeds() -> list[bytes]:
    from ccai.collateral import CollateralBundle, GpuCollateral, dump_bundle, tdx_collateral_from_json

    collateral = tdx_collateral_from_json(_tdx_collateral_text())
    rims = {_DRIVER_545: _read(f"{_NVT}/Driver_RIM_test_no_gpu.swidtag")}
    bundle = CollateralBundle(
        gpu=GpuCollateral(rims=rims, ocsp_checked=False),
        cpu={"tdx": collateral.to_json()},
        created_at=_PIN_TDX,
    )
    return [dump_bundle(bundle)]


def _evidence_bundle_seeds() -> list[bytes]:
    from ccai.evidence import bundle_from_nonce_only_pair, dump_evidence_bundle

    quote = bytes.fromhex(_read("cpu/composite/secretvm/cpu_quote.txt").decode().strip())
    pair = bundle_from_nonce_only_pair(quote, _read("cpu/composite/secretvm/gpu_attest.txt"))
    return [dump_evidence_bundle(pair)]


def _sealed_header() -> object:
    from ccai.sealed._format import Header

    return Header(
        model_id=bytes(range(16)),
        chunk_size=1 << 20,
        kid="kek-1",
        wrap_nonce=bytes(12),
        wrapped_key=bytes(48),
        manifest_nonce=bytes(range(12)),
    )


def _sealed_header_seeds() -> list[bytes]:
    from ccai.sealed._format import Header

    header = _sealed_header()
    assert isinstance(header, Header)
    return [header.to_json()]


def _sealed_manifest_seeds() -> list[bytes]:
    from ccai.sealed._format import FileEntry, Manifest, SafetensorsInfo, TensorEntry

    tensors = (TensorEntry(name="w", dtype="BF16", shape=(2, 3), offset=64, size=12),)
    files = (
        FileEntry(
            index=0,
            name="model.safetensors",
            size=76,
            sha256=bytes(32),
            chunks=1,
            safetensors=SafetensorsInfo(header_size=64, metadata={"format": "pt"}, tensors=tensors),
        ),
        FileEntry(index=1, name="config.json", size=2, sha256=bytes(32), chunks=1, safetensors=None),
    )
    return [Manifest(model_id=bytes(range(16)), chunk_size=1 << 20, files=files).to_json()]


def _token_key() -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(0x1CCA1, ec.SECP384R1())


@functools.cache
def _token_jwks() -> dict[str, object]:
    from ccai.token import TokenSigner, jwks

    return jwks([TokenSigner(_token_key(), kid="fuzz")])


def _token_seeds() -> list[bytes]:
    from ccai.token import DetachedEat, sign_es384, submod_digest

    times = {"iat": int(_PIN_2025.timestamp()), "nbf": int(_PIN_2025.timestamp())}
    times["exp"] = int((_PIN_2025 + timedelta(hours=1)).timestamp())
    nonce = {"eat_nonce": _NONCE_4CFF.hex(), "iss": "ccai"}
    gpu = sign_es384({"measres": "success", **times, **nonce}, _token_key(), kid="fuzz")
    overall = sign_es384(
        {
            "x-nvidia-overall-att-result": True,
            "submods": {"GPU-0": ["DIGEST", ["SHA-256", submod_digest(gpu)]]},
            **times,
            **nonce,
        },
        _token_key(),
        kid="fuzz",
    )
    return [DetachedEat(overall=overall, submods={"GPU-0": gpu}).dumps().encode()]


# -- the targets -----------------------------------------------------------------------------------


def spdm_report(data: bytes) -> None:
    from ccai.evidence import parse_attestation_report

    with contextlib.suppress(Error):
        parse_attestation_report(data)


def opaque_data(data: bytes) -> None:
    from ccai.evidence._opaque import parse_opaque_data

    with contextlib.suppress(Error):
        parse_opaque_data(data)


def cert_chain(data: bytes) -> None:
    from ccai.evidence import parse_cert_chain

    with contextlib.suppress(Error):
        parse_cert_chain(data)


def evidence_json(data: bytes) -> None:
    from ccai.evidence import parse_evidence_json

    with contextlib.suppress(Error):
        for item in parse_evidence_json(data):
            with contextlib.suppress(Error):
                item.parse_report()
            with contextlib.suppress(Error):
                item.certificates()


def rim_parse(data: bytes) -> None:
    from ccai.evidence import parse_rim

    with contextlib.suppress(Error):
        parse_rim(data)


def rim_signature(data: bytes) -> None:
    from ccai.verify import nvidia_gpu_anchors
    from ccai.verify._rim_check import check_rim

    with contextlib.suppress(Error):
        check_rim(
            "fuzz",
            data,
            anchors=[nvidia_gpu_anchors()],
            now=_PIN_2025,
            step="(7) RIM authentication",
            what="fuzzed RIM",
        )


def tdx_quote(data: bytes) -> None:
    from ccai.evidence import parse_tdx_quote

    with contextlib.suppress(Error):
        parse_tdx_quote(data)


def tdx_eventlog_ccel(data: bytes) -> None:
    from ccai.evidence import parse_ccel, parse_ccel_table

    with contextlib.suppress(Error):
        parse_ccel(data)
    with contextlib.suppress(Error):
        parse_ccel_table(data)


def tdx_eventlog_json(data: bytes) -> None:
    from ccai.evidence import parse_json_event_log

    with contextlib.suppress(Error):
        parse_json_event_log(data)


def snp_report(data: bytes) -> None:
    from ccai.evidence import parse_snp_report

    with contextlib.suppress(Error):
        parse_snp_report(data)


def evidence_bundle(data: bytes) -> None:
    from ccai.collateral import cpu_collateral_from_bundle, load_embedded_collateral
    from ccai.evidence import load_evidence_bundle

    with contextlib.suppress(Error):
        bundle = load_evidence_bundle(data)
        embedded = load_embedded_collateral(bundle)
        for cpu_type in ("tdx", "snp"):
            with contextlib.suppress(Error):
                cpu_collateral_from_bundle(embedded, cpu_type)


def collateral_bundle(data: bytes) -> None:
    from ccai.collateral import load_bundle

    with contextlib.suppress(Error):
        load_bundle(data)


def tdx_collateral(data: bytes) -> None:
    from ccai.collateral import tdx_collateral_from_json

    with contextlib.suppress(Error):
        tdx_collateral_from_json(data)


def sealed_header(data: bytes) -> None:
    from ccai.sealed._format import Header

    with contextlib.suppress(Error):
        Header.from_json(data)


def sealed_manifest(data: bytes) -> None:
    from ccai.sealed._format import Header, Manifest

    header = _sealed_header()
    assert isinstance(header, Header)
    with contextlib.suppress(Error):
        Manifest.from_json(data, header=header)


def safetensors_header(data: bytes) -> None:
    from ccai.sealed._format import parse_safetensors_header

    with contextlib.suppress(Error):
        parse_safetensors_header(data, file_size=len(data) + (1 << 20), what="fuzzed file")


def _safetensors_seeds() -> list[bytes]:
    header = json.dumps(
        {
            "__metadata__": {"format": "pt"},
            "w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]},
            "b": {"dtype": "F32", "shape": [3], "data_offsets": [12, 24]},
        }
    ).encode()
    return [len(header).to_bytes(8, "little") + header + bytes(24)]


def token(data: bytes) -> None:
    from ccai.token import verify_token

    with contextlib.suppress(Error):
        verify_token(data, jwks=_token_jwks(), nonce=_NONCE_4CFF, now=_PIN_2025)


@functools.cache
def _h100() -> tuple[bytes, bytes]:
    from ccai.evidence import load_report

    return load_report(_read(f"{_NVT0}/attestationReport.txt")), _read(f"{_NVT0}/gpuAkCertChain.txt")


def _verify_h100(report: bytes, chain: bytes) -> None:
    from ccai.collateral import GpuCollateral
    from ccai.evidence import GpuEvidence
    from ccai.verify import default_policy, verify_gpu_evidence

    collateral = GpuCollateral(
        rims={
            _DRIVER_545: _read(f"{_NVT}/Driver_RIM_test_no_gpu.swidtag"),
            _VBIOS_5E01: _read(f"{_NVT}/1010_0200_882_96005E0001_test_no_gpu.swidtag"),
        },
        ocsp_checked=False,
    )
    item = GpuEvidence(arch="HOPPER", nonce=_NONCE_4CFF, report=report, certificate_chain=chain)
    with contextlib.suppress(Error):
        verify_gpu_evidence(
            [item],
            nonce=_NONCE_4CFF,
            collateral=collateral,
            now=_PIN_2024,
            policy=default_policy(allow_unchecked_revocation=True),
        )


def gpu_verify(data: bytes) -> None:
    report, chain = _h100()
    _verify_h100(_splice(report, data), chain)


def gpu_verify_chain(data: bytes) -> None:
    report, _ = _h100()
    _verify_h100(report, data)


@functools.cache
def _tdx_real() -> tuple[bytes, object]:
    from ccai.collateral import tdx_collateral_from_json

    return _read("cpu/tdx/dcap-qvl/tdx_quote"), tdx_collateral_from_json(_tdx_collateral_text())


def tdx_verify(data: bytes) -> None:
    from ccai.collateral import TdxCollateral
    from ccai.verify import verify_tdx_quote

    quote, collateral = _tdx_real()
    assert isinstance(collateral, TdxCollateral)
    with contextlib.suppress(Error):
        verify_tdx_quote(_splice(quote, data), collateral, now=_PIN_TDX)


def tdx_verify_collateral(data: bytes) -> None:
    from ccai.collateral import tdx_collateral_from_json
    from ccai.verify import verify_tdx_quote

    quote, _ = _tdx_real()
    with contextlib.suppress(Error):
        verify_tdx_quote(quote, tdx_collateral_from_json(data), now=_PIN_TDX)


@functools.cache
def _snp_real() -> tuple[bytes, bytes]:
    report = bytes.fromhex(_read("cpu/snp/virtee-sev/report_milan.hex").decode().strip())
    return report, _read("cpu/snp/virtee-sev/vcek_milan.der")


def snp_verify(data: bytes) -> None:
    from ccai.collateral import SnpCollateral
    from ccai.verify import verify_snp_report

    report, vcek = _snp_real()
    with contextlib.suppress(Error):
        verify_snp_report(_splice(report, data), SnpCollateral(vcek=vcek), now=_PIN_SNP)


def snp_verify_vcek(data: bytes) -> None:
    from ccai.collateral import SnpCollateral
    from ccai.verify import verify_snp_report

    report, _ = _snp_real()
    with contextlib.suppress(Error):
        verify_snp_report(report, SnpCollateral(vcek=data), now=_PIN_SNP)


# -- OCSP: a fixed-key test PKI answered by ccai's own responder ---------------------------------

_PIN_OCSP = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
_OCSP_NONCE = bytes(range(32))


@dataclass(frozen=True, slots=True)
class _OcspPki:
    root: x509.Certificate
    ca: x509.Certificate
    good: x509.Certificate
    revoked: x509.Certificate
    held: x509.Certificate
    responder: OcspResponder
    delegated: OcspResponder


@functools.cache
def _ocsp_pki() -> _OcspPki:
    """Root → CA → three end certificates and a delegated OCSP responder, with keys derived from
    fixed scalars: ECDSA signatures differ between runs, but every CertID, key and name is the
    same, so a kept crash input replays against the same PKI."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from ccai.virtual import OcspIssuer, OcspResponder, OcspRevocation

    keys = [ec.derive_private_key(0x0C5F00 + i, ec.SECP384R1()) for i in range(4)]
    root_key, ca_key, end_key, delegate_key = keys

    def cert(
        cn: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Certificate | None,
        signer: ec.EllipticCurvePrivateKey,
        serial: int,
        *,
        ca: bool,
        ocsp_signing: bool = False,
    ) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer.subject if issuer is not None else name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(datetime(2024, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2030, 1, 1, tzinfo=UTC))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ocsp_signing:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
            )
        return builder.sign(signer, hashes.SHA384())

    root = cert("Fuzz Root", root_key, None, root_key, 1, ca=True)
    ca = cert("Fuzz CA", ca_key, root, root_key, 2, ca=True)
    good = cert("Good", end_key, ca, ca_key, 0x1001, ca=False)
    revoked = cert("Revoked", end_key, ca, ca_key, 0x1002, ca=False)
    held = cert("Held", end_key, ca, ca_key, 0x1003, ca=False)
    delegate = cert("Fuzz OCSP", delegate_key, ca, ca_key, 0x2001, ca=False, ocsp_signing=True)

    def revocation(issuer: x509.Certificate, serial: int) -> OcspRevocation | None:
        reasons = {0x1002: x509.ReasonFlags.key_compromise, 0x1003: x509.ReasonFlags.certificate_hold}
        reason = reasons.get(serial)
        return (
            None
            if reason is None
            else OcspRevocation(revoked_at=datetime(2025, 1, 1, tzinfo=UTC), reason=reason)
        )

    def responder(delegated: bool) -> OcspResponder:
        issuer = OcspIssuer(
            certificate=ca,
            private_key=ca_key,
            delegate_certificate=delegate if delegated else None,
            delegate_key=delegate_key if delegated else None,
        )
        return OcspResponder([issuer], revocation=revocation, clock=lambda: _PIN_OCSP)

    return _OcspPki(root, ca, good, revoked, held, responder(False), responder(True))


def ocsp_response(data: bytes) -> None:
    from ccai.collateral import CollateralBundle, GpuCollateral, inspect_bundle
    from ccai.collateral._cache import DEFAULT_OCSP_TTL, ocsp_response_expiry
    from ccai.verify._ocsp_check import check_ocsp

    pki = _ocsp_pki()
    ca, root = pki.ca, pki.root
    # The collateral layer's readers (cache expiry, bundle inspector) answer, never raise.
    ocsp_response_expiry(data, now=_PIN_OCSP, default_ttl=DEFAULT_OCSP_TTL)
    inspect_bundle(CollateralBundle(gpu=GpuCollateral(ocsp={"fuzz": data})), now=_PIN_OCSP)
    for cert in (pki.good, pki.revoked):
        with contextlib.suppress(Error):
            check_ocsp(data, cert, ca, now=_PIN_OCSP, nonce=_OCSP_NONCE, trusted_roots=[root])
    with contextlib.suppress(Error):
        check_ocsp(data, pki.held, ca, now=_PIN_OCSP, allow_revocation_reasons={"certificateHold"})


def _ocsp_seeds() -> list[bytes]:
    """Real responses of the test responder: issuer-signed and delegated, good, revoked and held,
    SHA-384 and SHA-1 CertIDs, with and without a nonce, and an unsuccessful one. (tests/vectors
    holds no OCSP response.)"""
    from cryptography.hazmat.primitives import hashes

    from ccai.collateral import build_ocsp_request

    pki = _ocsp_pki()
    ca = pki.ca
    seeds = []
    for responder in (pki.responder, pki.delegated):
        for cert in (pki.good, pki.revoked, pki.held):
            seeds.append(responder.respond(build_ocsp_request(cert, ca, nonce=_OCSP_NONCE)))
        request = build_ocsp_request(pki.good, ca, nonce=None, algorithm=hashes.SHA1())
        seeds.append(responder.respond(request))
    seeds.append(pki.responder.respond(build_ocsp_request(ca, pki.root, nonce=None)))  # unauthorized
    return seeds


def _gpu_report_seed() -> list[bytes]:
    return [_h100()[0]]


def _vcek_seed() -> list[bytes]:
    from ccai.collateral import load_certificates

    dstack = load_certificates(_read("cpu/snp/dstack/sev_snp_vcek.pem"))[0]
    return [_snp_real()[1], dstack.public_bytes(Encoding.DER)]


_ALL = [
    Target("spdm_report", spdm_report, _gpu_reports, "GPU SPDM attestation report parser"),
    Target("opaque_data", opaque_data, _opaque_seeds, "NVIDIA opaque data parser"),
    Target("cert_chain", cert_chain, _cert_chains, "PEM certificate chain parser (GPU device chain)"),
    Target("evidence_json", evidence_json, _evidence_json_seeds, "NVIDIA evidence JSON + its reports/chains"),
    Target("rim_parse", rim_parse, _rim_seeds, "RIM SWID XML parser"),
    Target("rim_signature", rim_signature, _rim_seeds, "RIM chain + XMLDSig check (check_rim)"),
    Target("tdx_quote", tdx_quote, _tdx_quotes, "TDX DCAP quote parser"),
    Target(
        "tdx_eventlog_ccel",
        tdx_eventlog_ccel,
        lambda: [
            _read("cpu/tdx/go-tdx-guest/ccel/ccel_data.dat"),
            _read("cpu/tdx/go-tdx-guest/ccel/ccel_table.dat"),
        ],
        "CCEL binary event log and ACPI table",
    ),
    Target("tdx_eventlog_json", tdx_eventlog_json, _event_log_json_seeds, "TDX JSON event log"),
    Target("snp_report", snp_report, _snp_reports, "SEV-SNP attestation report parser"),
    Target("evidence_bundle", evidence_bundle, _evidence_bundle_seeds, "composite evidence bundle loader"),
    Target(
        "collateral_bundle", collateral_bundle, _collateral_bundle_seeds, "offline collateral bundle loader"
    ),
    Target(
        "tdx_collateral", tdx_collateral, lambda: [_tdx_collateral_text().encode()], "TDX collateral JSON"
    ),
    Target("sealed_header", sealed_header, _sealed_header_seeds, "sealed-model header"),
    Target("sealed_manifest", sealed_manifest, _sealed_manifest_seeds, "sealed-model manifest (decrypted)"),
    Target("safetensors_header", safetensors_header, _safetensors_seeds, "safetensors header (sealing)"),
    Target("token", token, _token_seeds, "detached EAT verification (verify_token)"),
    Target("gpu_verify", gpu_verify, _gpu_report_seed, "verify_gpu_evidence on the spliced H100 report"),
    Target(
        "gpu_verify_chain", gpu_verify_chain, lambda: [_h100()[1]], "verify_gpu_evidence, fuzzed device chain"
    ),
    Target("tdx_verify", tdx_verify, lambda: [_tdx_real()[0]], "verify_tdx_quote on the spliced real quote"),
    Target(
        "tdx_verify_collateral",
        tdx_verify_collateral,
        lambda: [_tdx_collateral_text().encode()],
        "verify_tdx_quote, fuzzed collateral",
    ),
    Target(
        "snp_verify", snp_verify, lambda: [_snp_real()[0]], "verify_snp_report on the spliced real report"
    ),
    Target("snp_verify_vcek", snp_verify_vcek, _vcek_seed, "verify_snp_report, fuzzed VCEK"),
    Target(
        "ocsp_response", ocsp_response, _ocsp_seeds, "check_ocsp + the collateral readers, fuzzed response"
    ),
]

#: Every target by name, in a stable order.
TARGETS: dict[str, Target] = {t.name: t for t in _ALL}

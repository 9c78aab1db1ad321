"""Evidence stage of ccai: pure parsers — bytes in, frozen dataclasses out; nothing is verified here.

* NVIDIA GPU / NVSwitch: the SPDM attestation report and its opaque data, PEM certificate chains,
  NVIDIA's evidence JSON, RIM XML and the RIM ids derived from a report
  (docs/gpu-evidence-format.md).
* CPU TEEs: Intel TDX quotes and event logs, AMD SEV-SNP reports (their own modules below).
* The composite evidence bundle (docs/composite-evidence.md): its versioned JSON layout
  (:class:`EvidenceBundle`, :func:`load_evidence_bundle`, :func:`dump_evidence_bundle`) and the
  byte layout of the binding that ties one verifier nonce to the GPU evidence, the CPU report_data
  and the bound keys (:func:`composite_report_data`, checked in constant time by
  :func:`check_report_data`). The embedded collateral stays opaque here
  (:func:`ccai.collateral.load_embedded_collateral` reads it).

Every parser reads through :class:`ccai._binary.Reader` (or a hardened XML/JSON parser) and raises
:class:`~ccai.errors.MalformedEvidence` on bad input; verification lives in :mod:`ccai.verify`.
"""

from ccai.evidence._binding import (
    BINDING_NONCE_ONLY,
    BINDING_SCHEMES,
    BINDING_V1,
    check_report_data,
    composite_report_data,
    derive_gpu_nonce,
    gpu_evidence_digest,
    switch_evidence_digest,
)
from ccai.evidence._bundle import (
    BUNDLE_FORMAT,
    EVIDENCE_BUNDLE_VERSION,
    CpuEvidence,
    EvidenceBundle,
    bundle_from_nonce_only_pair,
    dump_evidence_bundle,
    evidence_bundle_from_json,
    load_evidence_bundle,
)
from ccai.evidence._certs import (
    load_certificate,
    load_crl,
    load_ocsp_response,
    load_pem_certificates,
    parse_cert_chain,
)
from ccai.evidence._nvidia_json import GpuEvidence, dump_evidence_json, parse_evidence_json
from ccai.evidence._opaque import OpaqueData, OpaqueField
from ccai.evidence._rim import Rim, RimMeasurement, parse_rim
from ccai.evidence._rim_ids import device_arch, driver_rim_id, vbios_rim_id
from ccai.evidence._snp import (
    SnpGuestPolicy,
    SnpPlatformInfo,
    SnpProduct,
    SnpReport,
    SnpSigningKey,
    SnpTcbVersion,
    VcekExtensions,
    parse_snp_report,
    parse_vcek_extensions,
)
from ccai.evidence._spdm import (
    AttestationReport,
    MeasurementBlock,
    SpdmRequest,
    SpdmResponse,
    load_report,
    parse_attestation_report,
)
from ccai.evidence._tdx import (
    INTEL_QE_VENDOR_ID,
    PckExtensions,
    QeReport,
    TdAttributes,
    TdReportBody,
    TdxQuote,
    TdxQuoteHeader,
    parse_pck_extensions,
    parse_tdx_quote,
)
from ccai.evidence._tdx_eventlog import (
    CcelTable,
    TdxEvent,
    parse_ccel,
    parse_ccel_table,
    parse_json_event_log,
)

__all__ = [
    "BINDING_NONCE_ONLY",
    "BINDING_SCHEMES",
    "BINDING_V1",
    "BUNDLE_FORMAT",
    "EVIDENCE_BUNDLE_VERSION",
    "INTEL_QE_VENDOR_ID",
    "AttestationReport",
    "CcelTable",
    "CpuEvidence",
    "EvidenceBundle",
    "GpuEvidence",
    "MeasurementBlock",
    "OpaqueData",
    "OpaqueField",
    "PckExtensions",
    "QeReport",
    "Rim",
    "RimMeasurement",
    "SnpGuestPolicy",
    "SnpPlatformInfo",
    "SnpProduct",
    "SnpReport",
    "SnpSigningKey",
    "SnpTcbVersion",
    "SpdmRequest",
    "SpdmResponse",
    "TdAttributes",
    "TdReportBody",
    "TdxEvent",
    "TdxQuote",
    "TdxQuoteHeader",
    "VcekExtensions",
    "bundle_from_nonce_only_pair",
    "check_report_data",
    "composite_report_data",
    "derive_gpu_nonce",
    "device_arch",
    "driver_rim_id",
    "dump_evidence_bundle",
    "dump_evidence_json",
    "evidence_bundle_from_json",
    "gpu_evidence_digest",
    "load_certificate",
    "load_crl",
    "load_evidence_bundle",
    "load_ocsp_response",
    "load_pem_certificates",
    "load_report",
    "parse_attestation_report",
    "parse_ccel",
    "parse_ccel_table",
    "parse_cert_chain",
    "parse_evidence_json",
    "parse_json_event_log",
    "parse_pck_extensions",
    "parse_rim",
    "parse_snp_report",
    "parse_tdx_quote",
    "parse_vcek_extensions",
    "switch_evidence_digest",
    "vbios_rim_id",
]

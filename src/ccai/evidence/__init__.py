"""Evidence stage of ccai: pure parsers — bytes in, frozen dataclasses out; nothing is verified here.

* NVIDIA GPU / NVSwitch: the SPDM attestation report and its opaque data, PEM certificate chains,
  NVIDIA's evidence JSON, RIM XML and the RIM ids derived from a report
  (docs/gpu-evidence-format.md).
* CPU TEEs: Intel TDX quotes and event logs, AMD SEV-SNP reports (their own modules below).

Every parser reads through :class:`ccai._binary.Reader` (or a hardened XML/JSON parser) and raises
:class:`~ccai.errors.MalformedEvidence` on bad input; verification lives in :mod:`ccai.verify`.
"""

from ccai.evidence._certs import load_certificate, load_crl, load_pem_certificates, parse_cert_chain
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
    "AttestationReport",
    "CcelTable",
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
    "device_arch",
    "driver_rim_id",
    "dump_evidence_json",
    "load_certificate",
    "load_crl",
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
    "vbios_rim_id",
]

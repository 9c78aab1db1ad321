"""kbs stage of ccai: the key broker (Trustee's RCAR protocol) and its guest-side client.

The broker releases resources (model keys) only to attested confidential VMs: evidence — a ccai
composite bundle, or Trustee's own TDX + NVIDIA encoding — is verified in-process by
:class:`ccai.verify.Verifier`, the resource's policy judges the claims
(default deny), and the value is returned as a JWE wrapped to the attested tee-pubkey. Resources
are stored under envelope encryption; every release and refusal lands in a hash-chained audit log.
See ``docs/key-broker.md``.
"""

from ccai.kbs._app import KbsSettings, admin_credential_path, create_kbs_app, read_admin_credential
from ccai.kbs._audit import record_hash, verify_audit_chain
from ccai.kbs._broker import DEVTOOLS_HINT, Broker, BrokerRefusal, check_resource_name, refusal_reason
from ccai.kbs._client import (
    PROTOCOL_VERSION,
    BrokerKey,
    EvidenceFunction,
    KbsClient,
    KbsRefused,
    TrusteeEvidenceProvider,
    fetch_kek,
    fetch_resource,
)
from ccai.kbs._jose import decrypt_jwe, encrypt_jwe, public_jwk, runtime_data_hash
from ccai.kbs._keys import ENVELOPE_FORMAT, MASTER_KEY_ENV, FileKeyProvider, KeyProvider

__all__ = [
    "DEVTOOLS_HINT",
    "ENVELOPE_FORMAT",
    "MASTER_KEY_ENV",
    "PROTOCOL_VERSION",
    "Broker",
    "BrokerKey",
    "BrokerRefusal",
    "EvidenceFunction",
    "FileKeyProvider",
    "KbsClient",
    "KbsRefused",
    "KbsSettings",
    "KeyProvider",
    "TrusteeEvidenceProvider",
    "admin_credential_path",
    "check_resource_name",
    "create_kbs_app",
    "decrypt_jwe",
    "encrypt_jwe",
    "fetch_kek",
    "fetch_resource",
    "public_jwk",
    "read_admin_credential",
    "record_hash",
    "refusal_reason",
    "runtime_data_hash",
    "verify_audit_chain",
]

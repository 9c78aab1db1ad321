"""The hash-chained audit log: the record hash and the chain check (pure functions, no I/O).

Each record stores ``prev_hash`` (the previous record's ``hash``; 64 zeros for the first) and
``hash`` = SHA-256(``prev_hash`` ‖ canonical JSON of its content). Editing a record breaks its own
hash; deleting one breaks the next record's ``prev_hash`` and leaves a gap in ``seq``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from ccai.errors import VerificationError
from ccai.kbs._jose import canonical_json

__all__ = ["AUDIT_FIELDS", "GENESIS", "record_hash", "verify_audit_chain"]

GENESIS = "0" * 64
#: The fields a record's hash covers, besides ``prev_hash``.
AUDIT_FIELDS = ("seq", "at", "event", "resource", "claims_digest", "policy", "verdict", "reason")


def record_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of ``prev_hash`` ‖ the canonical JSON of the record's :data:`AUDIT_FIELDS`."""
    content = canonical_json({k: record.get(k) for k in AUDIT_FIELDS})
    return hashlib.sha256(prev_hash.encode("ascii") + content).hexdigest()


def verify_audit_chain(records: Iterable[Mapping[str, Any]]) -> int:
    """Check the chain from the first record on.

    Returns:
        The number of records checked.

    Raises:
        VerificationError: a record was edited, removed or reordered (the message names its ``seq``).
    """
    prev, expected_seq, count = GENESIS, 1, 0
    for record in records:
        seq = record.get("seq")
        if seq != expected_seq:
            raise VerificationError(
                f"audit log: record {expected_seq} is missing (found {seq})",
                expected=expected_seq,
                actual=seq,
            )
        if record.get("prev_hash") != prev:
            raise VerificationError(f"audit log: record {seq} does not follow record {expected_seq - 1}")
        if record.get("hash") != record_hash(prev, record):
            raise VerificationError(f"audit log: record {seq} was edited")
        prev, expected_seq, count = str(record["hash"]), expected_seq + 1, count + 1
    return count

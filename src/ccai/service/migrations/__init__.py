"""Alembic migrations of the attestation service's schema (applied at start by ``ccai.service``)."""

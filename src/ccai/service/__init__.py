"""service stage of ccai: the attestation service (HTTP; see docs/architecture.md). Nothing here yet."""

__all__: list[str] = []

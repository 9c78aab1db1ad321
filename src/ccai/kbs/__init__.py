"""kbs stage of ccai (see docs/architecture.md)."""

__all__: list[str] = []

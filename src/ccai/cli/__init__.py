"""The ``ccai`` command line: one module per command group, errors mapped to exit codes in one place."""

from __future__ import annotations

__all__: list[str] = []

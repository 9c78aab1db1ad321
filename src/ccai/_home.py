"""Where ccai keeps local state: ``$CCAI_HOME``, default ``~/.ccai``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ccai_home"]


def ccai_home(*, create: bool = True) -> Path:
    """The state directory (virtual hardware state, caches, generated test PKI).

    Args:
        create: Create it (mode 0700) when missing.
    """
    home = Path(os.environ.get("CCAI_HOME") or Path.home() / ".ccai").expanduser()
    if create:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home

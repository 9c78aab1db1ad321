"""Where ccai keeps local state: ``$CCAI_HOME``, default ``~/.ccai``."""

from __future__ import annotations

import os
from pathlib import Path

from ccai._files import private_dir

__all__ = ["ccai_home"]


def ccai_home(*, create: bool = True) -> Path:
    """The state directory (virtual hardware state, caches, generated test PKI).

    Args:
        create: Create it when missing; it is kept private (mode 0700, repaired when wider).
    """
    home = Path(os.environ.get("CCAI_HOME") or Path.home() / ".ccai").expanduser()
    if create:
        private_dir(home)
    return home

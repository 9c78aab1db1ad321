"""The fuzz harness modules (fuzz_targets, fuzz_engine) are plain modules next to the tests; the
runner scripts/fuzz imports them the same way."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

"""ccai: confidential AI inference on NVIDIA GPUs.

The package is laid out in data-flow order (see ``docs/architecture.md``)::

    device → tee → attest → evidence → collateral → verify → token → service/kbs
           → sealed → gateway/client → bench, with cli/ on top.
"""

from __future__ import annotations

from ccai import errors

__version__ = "0.1.0"

__all__ = ["__version__", "errors"]

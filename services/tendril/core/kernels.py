"""``tendril_kernels`` (``kernels/``: the C loops of the outer step and the payload codecs) when
it is installed, else None: its callers then run their numpy references, the same bits, slower.

# NOTE: one import for every caller (tendril.core.codecs, tendril.paramserver.outer), so a
# process logs a missing build once, at the import, not on every call.
"""

from __future__ import annotations

from types import ModuleType

from tendril.core.logs import get_logger

log = get_logger("tendril.core")


def _load() -> ModuleType | None:
    try:
        import tendril_kernels
    except ImportError as exc:  # (a checkout run without `make venv`): numpy, about 5× slower
        log.warning("kernels.missing", error=str(exc), using="numpy references")
        return None
    return tendril_kernels


KERNELS = _load()

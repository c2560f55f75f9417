"""NumPy's huge-page advice, switched off while atm-step works.

On Linux, NumPy asks the kernel for transparent huge pages (``madvise(MADV_HUGEPAGE)``)
on every array of 4 MiB or more. Where the kernel's THP ``defrag`` setting is
``madvise`` (the default of most distributions), that advice makes each first touch
of a fresh 2 MiB page compact memory synchronously when free huge pages are short. The
oversampled images of one exposure are 1-3 GB of fresh memory per call, and on a
machine whose memory is fragmented this compaction took 1-5 s of system time per
NIRSpec IFU ``Step.call`` (docs/batch.md). Without the advice the kernel still gives
huge pages where they are free (THP ``enabled=always``) or not at all
(``enabled=madvise``), and a page fault costs a few microseconds.

`no_huge_page_advice` switches NumPy's advice off for the duration of a call and
restores it afterwards (NumPy's documented global switch ``NUMPY_MADVISE_HUGEPAGE``,
set at import, through its runtime setter). It does nothing when the user has set
``NUMPY_MADVISE_HUGEPAGE`` (their choice wins), on NumPy versions without the setter,
or off Linux.
"""

import logging
import os
import threading
from contextlib import contextmanager

__all__ = ["no_huge_page_advice"]

log = logging.getLogger(__name__)

_lock = threading.Lock()
_state = {"depth": 0, "before": None}


def _setter():
    """NumPy's runtime switch of its huge-page advice, or None where there is none."""
    for path in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            module = __import__(path, fromlist=["_set_madvise_hugepage"])
        except ImportError:
            continue
        setter = getattr(module, "_set_madvise_hugepage", None)
        if setter is not None:
            return setter
    return None


@contextmanager
def no_huge_page_advice():
    """
    Switch NumPy's huge-page advice off while the block runs, then restore it.

    Nested and concurrent uses (threads) share one switch: the first to enter turns
    the advice off, the last to leave restores the value found by the first.

    Yields
    ------
    bool
        Whether the advice was switched by this package (False when the user set
        ``NUMPY_MADVISE_HUGEPAGE``, or NumPy has no runtime switch).

    Notes
    -----
    Only NumPy's allocation hint changes; array contents and results do not.
    Source: NumPy's "Global state" documentation (``NUMPY_MADVISE_HUGEPAGE``);
    ``numpy._core.multiarray._set_madvise_hugepage`` is its runtime form (numpy PR 15769).
    """
    setter = None if "NUMPY_MADVISE_HUGEPAGE" in os.environ else _setter()
    if setter is None:
        yield False
        return
    with _lock:
        if _state["depth"] == 0:
            _state["before"] = bool(setter(False))
        _state["depth"] += 1
    try:
        yield True
    finally:
        with _lock:
            _state["depth"] -= 1
            if _state["depth"] == 0:
                setter(_state["before"])


"""The cyclic garbage collector, tuned once the daemon has started (``spoolerd run``; #17).

What start-up made (modules, the config, plugins, the stores' and transports' objects) lives as long as
the process: ``gc.freeze`` moves it out of the collector's generations, so no later collection scans it
again. The work of a delivery makes many short-lived container objects (rows, dicts, coroutines and
their frames) that reference counting frees, few of them in cycles: a first-generation threshold of
``GEN0_THRESHOLD`` allocations instead of 700 lets the collector run about 70 times less often over them.
"""

from __future__ import annotations

import gc

__all__ = ["GEN0_THRESHOLD", "settle"]

GEN0_THRESHOLD = 50_000


def settle(gen0: int = GEN0_THRESHOLD) -> None:
    """Freeze what exists now and raise the first generation's threshold (the others kept)."""
    gc.collect()  # start-up's garbage goes now, not frozen with what stays
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, gen1, gen2)

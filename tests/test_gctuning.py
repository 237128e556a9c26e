"""spoolerd/gctuning.py: once started, the daemon's objects are frozen out of the collector's scans and
its first generation collects less often."""

from __future__ import annotations

import subprocess
import sys


def test_settle_freezes_what_exists_and_raises_the_first_threshold() -> None:
    code = (
        "import gc; from spoolerd import gctuning; before = gc.get_threshold(); gctuning.settle();"
        " after = gc.get_threshold(); assert gc.get_freeze_count() > 1000, gc.get_freeze_count();"
        " assert after == (gctuning.GEN0_THRESHOLD, *before[1:]), (before, after); print('ok')"
    )
    command = [sys.executable, "-c", code]  # in a process of its own: this one's collector is left alone
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "ok", done.stderr

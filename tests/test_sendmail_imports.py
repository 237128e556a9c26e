"""spoolerd-sendmail starts fast: its submit path imports only the standard library it needs (issue #17:
a sendmail command's start-up is most of its time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# what a submit does not need: dependencies, and standard modules that cost start-up time for nothing
NOT_ON_THE_SUBMIT_PATH = {
    "anyio", "pydantic", "structlog", "aiosmtpd", "uvloop",  # dependencies
    "dataclasses", "inspect", "pathlib", "typing", "contextlib", "email", "asyncio", "logging",
}  # fmt: skip


def test_submit_path_imports() -> None:
    # -S: no site, so no editable-install finder; the package comes from the source tree, as installed
    probe = "import json, sys, spoolerd.sendmail; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert loaded & NOT_ON_THE_SUBMIT_PATH == set()

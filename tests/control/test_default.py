"""The README's first command: ``spoolerd run`` with no config, in an empty directory, is a working daemon
(SQLite store in ./spool, loopback transport, control socket ./spool/control.sock)."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio

from spoolerd.client import ControlClient


async def test_the_embedded_default_runs_and_delivers_locally() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="spd"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("STATE_DIRECTORY", "RUNTIME_DIRECTORY", "SPOOLERD_SOCKET")
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spoolerd.cli", "run", cwd=workdir, env=env, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    try:
        with anyio.fail_after(30):
            while b"spooler running" not in (line := await proc.stderr.readline()):
                assert line, "the daemon exited before it was ready"

        def talk() -> list[dict[str, object]]:
            with ControlClient(workdir / "spool" / "control.sock") as client:
                assert client.call("ping")["pong"] is True
                message = base64.b64encode(b"To: me@localhost\r\nSubject: first\r\n\r\nhello\r\n").decode()
                client.call("submit", message=message)
                client.call("flush")
                return client.call("list", folder="inbox")  # type: ignore[no-any-return]

        (copy,) = await anyio.to_thread.run_sync(talk)
        assert copy["subject"] == "first"
        assert (workdir / "spool" / "spool.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert await proc.wait() == 0

"""The systemd notify protocol, against a real datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio

from tests.conftest import reap
from tests.control.conftest import Daemon


async def test_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="spd"))
    os.chmod(root, 0o755)
    daemon = Daemon(root)
    cfg = daemon.write_config()
    notify_path = root / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_path))
    receiver.setblocking(False)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spoolerd.cli", "run", "--config", str(cfg), env=env, stderr=subprocess.DEVNULL
    )
    env.pop("WATCHDOG_PID", None)
    loop = asyncio.get_running_loop()

    async def datagram() -> dict[str, str]:
        data = await loop.sock_recv(receiver, 4096)
        return dict(line.split("=", 1) for line in data.decode().splitlines())

    try:
        with anyio.fail_after(30):
            seen: list[dict[str, str]] = []
            while not any("READY" in d for d in seen) or sum("WATCHDOG" in d for d in seen) < 2:
                seen.append(await datagram())
        ready = next(d for d in seen if "READY" in d)
        assert ready["READY"] == "1" and ready["STATUS"].startswith("running: 1 store(s)")
        assert ready["MAINPID"] == str(proc.pid)
        assert daemon.socket.exists()  # ready means the control socket already answers
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            while "STOPPING" not in (d := await datagram()):
                pass
        assert d["STOPPING"] == "1"
        with anyio.fail_after(30):
            assert await proc.wait() == 0
    finally:
        await reap(proc)
        receiver.close()

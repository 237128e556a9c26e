"""``spoolerd-sendmail -bs``: one SMTP session on stdin/stdout with the listener's session code, the local
user as the authenticated identity; driven by swaks (``--pipe``) and by a client that writes everything
at once and closes its end."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.listener.conftest import ListenerDaemon, in_thread, message
from tests.listener.test_clients import _need

BS = [str(Path(sys.executable).parent / "spoolerd-sendmail"), "-bs"]


def _env(d: ListenerDaemon) -> dict[str, str]:
    return {**os.environ, "SPOOLERD_SOCKET": str(d.socket)}


async def test_swaks_over_a_pipe(daemon: ListenerDaemon) -> None:
    _need("swaks")
    argv = ["swaks", "--pipe", " ".join(BS), "--from", "app@example.com", "--to", "bob@localhost"]
    argv += ["--header", "Subject: piped through -bs", "--timeout", "30"]
    done: Any = await in_thread(
        lambda: subprocess.run(
            argv, capture_output=True, text=True, timeout=60, check=False, env=_env(daemon)
        )
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "250 2.0.0 Ok: queued as " in done.stdout
    [row] = await daemon.inbox(1)
    assert row["subject"] == "piped through -bs"
    header = (await daemon.fetch(row["id"])).split(b"\r\n\r\n")[0]
    assert f"(Authenticated sender: {getpass.getuser()})".encode() in header and b"with ESMTPA" in header


async def test_everything_at_once_then_eof(daemon: ListenerDaemon) -> None:
    script = b"EHLO local\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<bob@localhost>\r\n"
    script += b"RCPT TO:<bad\x01@localhost>\r\nDATA\r\n" + message("all at once") + b".\r\n"
    done: Any = await in_thread(
        lambda: subprocess.run(
            BS, input=script, capture_output=True, timeout=60, check=False, env=_env(daemon)
        )
    )
    assert done.returncode == 0, done.stderr
    replies = [line[:3] for line in done.stdout.splitlines() if line[3:4] == b" "]
    assert replies == [b"220", b"250", b"250", b"250", b"501", b"354", b"250", b"421"][: len(replies)], (
        done.stdout
    )
    assert b"250 2.0.0 Ok: queued as " in done.stdout
    assert [r["subject"] for r in await daemon.inbox(1)] == ["all at once"]

"""What a 250 promises: a store that cannot write answers 451 4.3.0 and keeps nothing half made; SIGTERM
stops intake at once but lets a session in the middle of DATA finish and get its 250."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.test_full_disk import fill
from tests.listener.conftest import ListenerDaemon, Raw, in_thread, message, sendmail


@pytest.fixture
def small_state(root: Path) -> Iterator[Path]:
    where = root / "state"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], check=False)
    if mounted.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


async def test_a_store_that_cannot_write_answers_451(small_state: Path, make_daemon: Any) -> None:
    d: ListenerDaemon = await make_daemon()
    filler = fill(small_state)
    big = message("too big for the disk", body="x" * 998 + "\r\n") * 1  # header + body
    body = big + (b"y" * 998 + b"\r\n") * 1000  # ~1 MB: new pages, which the full disk refuses

    def run() -> str:
        with Raw(d.port) as c:
            c.cmd("EHLO full")
            c.cmd("MAIL FROM:<a@example.com>")
            c.cmd("RCPT TO:<bob@localhost>")
            c.cmd("DATA")
            c.send(body + b".\r\n")
            return c.reply()

    reply = await in_thread(run)
    assert reply.startswith("451 4.3.0 "), reply
    await d.wait_log(lambda e: e.get("event") == "smtp message not accepted")
    assert (await d.status_row())["last_error"]
    filler.unlink()
    assert await in_thread(sendmail, d, "a@example.com", ["bob@localhost"], message("fits")) == {}
    rows = await d.inbox(1)
    await d.drained()
    ctl = await d.client()
    assert [r["subject"] for r in rows] == ["fits"]
    assert await ctl.ok("list", folder="outbox") == []  # the refused one left nothing behind


async def test_sigterm_lets_a_session_in_data_finish(daemon: ListenerDaemon) -> None:
    c = Raw(daemon.port)
    try:
        c.cmd("EHLO finishing")
        c.cmd("MAIL FROM:<a@example.com>")
        c.cmd("RCPT TO:<bob@localhost>")
        assert c.cmd("DATA").startswith("354")
        c.send(message("in flight")[:30])
        idle = Raw(daemon.port)  # a session not in DATA: hung up on at once
        idle.cmd("EHLO idle")
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        await daemon.wait_log(lambda e: e.get("event") == "stopping")
        assert (await in_thread(idle.reply)).startswith("421 4.3.2 ")
        idle.close()
        with pytest.raises(OSError):  # intake stopped: no new connections
            socket.create_connection(("127.0.0.1", daemon.port), timeout=5).close()
        c.send(message("in flight")[30:] + b".\r\n")
        reply = await in_thread(c.reply)
        assert reply.startswith("250 2.0.0 Ok: queued as "), reply
    finally:
        c.close()
    assert daemon.proc is not None
    assert await daemon.proc.wait() == 0
    if daemon.reader is not None:
        await daemon.reader
    await daemon.close_clients()
    await daemon.start()  # delivered now or after the restart: either way it is there
    assert [r["subject"] for r in await daemon.inbox(1)] == ["in flight"]

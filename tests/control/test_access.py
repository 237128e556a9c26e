"""The control commands' split (spoolerd/control/access.py), asked as a user and as an administrator
without switching uid: the gate is in ``run_command``, behind the socket's peer check."""

from __future__ import annotations

import io
import json
import socket
import threading
from pathlib import Path

import anyio
import pytest

from spoolerd.control.access import USER_COMMANDS
from spoolerd.control.commands import COMMANDS, CommandError, Connection, run_command
from spoolerd.progress import FlushCount, FlushProgress
from tests.conftest import FakeClock
from tests.engine.harness import spooler


async def _nothing(event: dict[str, object]) -> None:
    return None


def _as(admin: bool) -> Connection:
    return Connection(1000, _nothing, anyio.Event(), admin=admin)


async def test_a_user_is_refused_every_administrators_command_before_its_arguments(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with spooler(tmp_path, clock) as h:
        for cmd in sorted(set(COMMANDS) - USER_COMMANDS):
            with pytest.raises(CommandError) as refused:
                await run_command(h.daemon, cmd, {}, _as(admin=False))
            assert refused.value.code == "forbidden" and cmd in str(refused.value), cmd
        assert (await run_command(h.daemon, "ping", {}, _as(admin=False)))["pong"] is True  # type: ignore[index]


async def test_a_user_sees_the_queue_without_what_the_mail_says(tmp_path: Path, clock: FakeClock) -> None:
    """mailq shows envelopes: a user who may list the queue is not shown each message's Subject."""
    async with spooler(tmp_path, clock) as h:
        h.spooler.dispatcher.slot("loopback").resource.online = False  # type: ignore[union-attr]
        await h.submit("bob@remote.test", content=b"Subject: salary data\r\n\r\nx\r\n", subject="salary data")
        (as_user,) = await run_command(h.daemon, "queue", {}, _as(admin=False))  # type: ignore[misc]
        (as_admin,) = await run_command(h.daemon, "queue", {}, _as(admin=True))  # type: ignore[misc]
        assert "subject" not in as_user and as_admin["subject"] == "salary data"
        assert as_user["sender"] == as_admin["sender"] and as_user["id"] == as_admin["id"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_users_flush_on_a_terminal_draws_no_count_it_cannot_follow(tmp_path: Path) -> None:
    """A user may flush but not subscribe to the events the count is made of: the progress line is left
    out, not drawn at 0/N for the whole flush."""
    path = str(tmp_path / "control.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()

        def refuse() -> None:  # the daemon's answer to a user's subscribe
            conn, _ = server.accept()
            with conn:
                request = json.loads(conn.makefile("rb").readline())
                error = {"code": "forbidden", "message": "subscribe is for the daemon's administrators"}
                conn.sendall(json.dumps({"id": request["id"], "ok": False, "error": error}).encode() + b"\n")
                conn.recv(1)  # until the client hangs up

        answering = threading.Thread(target=refuse, daemon=True)
        answering.start()
        screen = _Terminal()
        with FlushProgress(path, FlushCount(3), stream=screen) as progress:
            progress._threads[1].join(5.0)  # the painter gives up as soon as the refusal came
            assert not progress._threads[1].is_alive()
        answering.join(5.0)
    assert "flushing" not in screen.getvalue()

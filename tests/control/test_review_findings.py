"""Regression tests for review findings on the control socket and the command-line tools."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import tempfile
from pathlib import Path

import anyio
import pytest

from spoolerd.control.commands import Connection, run_command
from spoolerd.events import EventHub
from tests.conftest import FakeClock
from tests.control.conftest import Daemon
from tests.control.test_tools import ctl, run, sendmail
from tests.engine.harness import spooler


async def test_clients_that_hang_up_before_the_answer_do_not_stop_the_daemon(daemon: Daemon) -> None:
    for _ in range(20):
        stream = await anyio.connect_unix(daemon.socket)
        await stream.send(b'{"id": 1, "cmd": "status"}\n{"id": 2, "cmd": "queue"}\n')
        await stream.aclose()
    c = await daemon.client()
    assert (await c.ok("ping"))["pong"]
    assert daemon.proc is not None and daemon.proc.returncode is None


async def test_a_config_that_is_not_utf8_is_refused_on_reload_and_sighup(daemon: Daemon) -> None:
    cfg = daemon.root / "spoolerd.toml"
    good = cfg.read_bytes()
    cfg.write_bytes(b'[spooler]\nreporting_mta = "\xff\xfe"\n')
    c = await daemon.client()
    answer = await c.call("reload")
    assert answer["error"]["code"] == "bad_config" and "not valid TOML" in answer["error"]["message"]
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    assert (await c.ok("ping"))["pong"]  # answered after the HUP was handled
    cfg.write_bytes(good)


async def test_subscriptions_are_released_when_the_client_is_already_gone(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with spooler(tmp_path, clock) as h:
        hub = h.store._hub  # type: ignore[attr-defined]
        before = len(hub._subscribers)
        closed = anyio.Event()
        closed.set()  # the client hung up before the stream started

        async def send_event(event: dict[str, object]) -> None:
            return None

        for _ in range(5):
            await run_command(h.daemon, "subscribe", {}, Connection(0, send_event, closed, admin=True))
        assert len(hub._subscribers) == before
        assert len(h.spooler.events._subscribers) == 0


async def test_a_subscriber_that_falls_behind_is_cut_off() -> None:
    hub: EventHub[int] = EventHub()
    slow = hub.subscribe(limit=3)
    keeper = hub.subscribe()
    for n in range(10):
        hub.publish(n)
    assert slow.overflowed and [n async for n in slow] == [0, 1, 2]
    assert keeper.pending() == list(range(10)) and not keeper.overflowed
    assert math.isinf(keeper._send.statistics().max_buffer_size)
    keeper.close()
    slow.close()


async def test_sendmail_without_a_daemon_or_a_store_fails_temporarily_and_writes_nothing() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="spd"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SPOOLERD_CONFIG", "STATE_DIRECTORY", "RUNTIME_DIRECTORY")
    }
    env["SPOOLERD_SOCKET"] = str(workdir / "none.sock")
    argv = [sys.executable, "-m", "spoolerd.sendmail", "alice@localhost"]
    done = await anyio.run_process(argv, input=b"Subject: x\n\nx\n", cwd=workdir, env=env, check=False)
    assert done.returncode == 75
    assert done.stderr.decode() == (  # the cause, first: which socket, and why
        f"spoolerd-sendmail: no spoolerd answers at {workdir / 'none.sock'}: No such file or directory,"
        " and there is no store to queue into (set SPOOLERD_CONFIG)\n"
    )
    assert not (workdir / "spool").exists()


async def test_sendmail_flags_cannot_inject_headers_and_null_sender_works(daemon: Daemon) -> None:
    argv, env = sendmail(daemon, "-F", "Joe\nBcc: spy@evil.test", "alice@localhost")
    assert (await run(*argv, stdin=b"Subject: x\n\nx\n", env=env)).returncode == 64
    argv, env = sendmail(daemon, "-f", "<>", "alice@localhost")
    assert (await run(*argv, stdin=b"Subject: bounce\n\nx\n", env=env)).returncode == 0
    await run(*ctl(daemon, "flush"), check=True)
    (sent,) = json.loads((await run(*ctl(daemon, "ls", "sent", "--json"), check=True)).stdout)
    assert sent["sender"] == ""  # the null sender, as -f '<>' asks


@pytest.mark.parametrize("argv", [("status", "--json"), ("--json", "status")])
async def test_json_flag_goes_before_or_after_the_command(daemon: Daemon, argv: tuple[str, ...]) -> None:
    rows = json.loads((await run(*ctl(daemon, *argv), check=True)).stdout)
    assert rows[0]["resource_type"] == "spooler"

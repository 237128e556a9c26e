"""reload applies [listeners] live (a new one bound, a changed one rebuilt, a removed one closed); an
address that cannot be had is a clear error at start and a failure row after a reload."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any

import anyio
import pytest

from tests.listener.conftest import ListenerDaemon, Raw, in_thread, message, sendmail
from tests.peers.ports import free_port


async def test_reload_adds_changes_and_removes_listeners(daemon: ListenerDaemon) -> None:
    second = free_port()
    daemon.listener = "max_recipients = 1"
    daemon.extra = f'[listeners.second]\naddress = "127.0.0.1:{second}"'
    daemon.write_config()
    ctl = await daemon.client()
    mark = len(daemon.lines)
    await ctl.ok("reload")
    await daemon.wait_log(
        lambda e: e.get("event") == "smtp listener started" and e["listener"] == "second", after=mark
    )
    await daemon.wait_log(
        lambda e: e.get("event") == "smtp listener started" and e["listener"] == "main", after=mark
    )
    with Raw(daemon.port) as c:  # main, rebuilt with its new limit
        c.cmd("EHLO x")
        c.cmd("MAIL FROM:<a@example.com>")
        assert c.cmd("RCPT TO:<a@localhost>").startswith("250")
        assert c.cmd("RCPT TO:<b@localhost>").startswith("452 4.5.3")
    other = ListenerDaemon.__new__(ListenerDaemon)
    other.port = second
    assert await in_thread(sendmail, other, "a@example.com", ["bob@localhost"], message("second")) == {}
    rows = await ctl.ok("status")
    assert {r["name"] for r in rows if r["resource_type"] == "listener"} == {"main", "second"}

    daemon.extra = ""
    daemon.write_config()
    mark = len(daemon.lines)
    await ctl.ok("reload")
    await daemon.wait_log(
        lambda e: e.get("event") == "smtp listener closed" and e["listener"] == "second", after=mark
    )
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", second), timeout=5).close()
    assert [r["subject"] for r in await daemon.inbox(1)] == ["second"]


async def test_an_alias_changed_by_reload_applies_on_a_session_already_open(make_daemon: Any) -> None:
    """The listener keeps what RCPT resolved to per config: a reload that changes only [aliases] (the
    listener is not rebuilt) is seen at the next RCPT of a session opened before it."""
    d: ListenerDaemon = await make_daemon(extra='[aliases]\npostmaster = ["bob@localhost"]')
    ctl = await d.client()
    with Raw(d.port) as c:
        c.cmd("EHLO x")
        for subject in ("before", "after"):
            if subject == "after":
                d.extra = '[aliases]\npostmaster = ["ops", "bob@localhost"]'
                d.write_config()
                await ctl.ok("reload")
            mark = len(d.lines)
            assert c.cmd("MAIL FROM:<a@example.com>").startswith("250")
            assert c.cmd("RCPT TO:<postmaster>").startswith("250 2.1.5")
            assert c.cmd("DATA").startswith("354")
            c.send(message(subject, to="postmaster") + b".\r\n")
            assert c.reply().startswith("250 2.0.0")
            accepted = await d.wait_log(lambda e: e.get("event") == "accepted", after=mark)
            assert accepted["nrcpt"] == (1 if subject == "before" else 2), accepted


async def test_a_reload_onto_a_taken_address_shows_failure(daemon: ListenerDaemon) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon.extra = f'[listeners.clash]\naddress = "127.0.0.1:{port}"'
        daemon.write_config()
        ctl = await daemon.client()
        answer = await ctl.ok("reload")  # given once the listeners were changed, or failed to be
        [problem] = answer["not_applied"]
        assert problem.startswith("listeners.clash: ") and "in use" in problem, answer
        await daemon.wait_log(lambda e: e.get("event") == "listener failing")  # its stderr, read apart
        rows = await ctl.ok("status")
        [row] = [r for r in rows if r["name"] == "clash"]
        assert row["status"] == ["failure"] and "in use" in row["last_error"]
        reloaded = await daemon.wait_log(lambda e: e.get("event") == "configuration reloaded")
        assert reloaded["not_applied"] == [problem]
        done = await anyio.run_process(  # spoolerctl says so, on stderr, and exits 5
            [sys.executable, "-m", "spoolerd.ctl", "--socket", str(daemon.socket), "reload"], check=False
        )
        assert done.returncode == 5, done
        assert done.stderr.decode() == f"spoolerctl: not applied: {problem}\n"


def test_a_taken_address_at_start_is_a_clear_error(tmp_path: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = tmp_path / "c.toml"
        cfg.write_text(
            f'[spooler]\nstate_dir = "{tmp_path}/state"\n[control]\nenabled = false\n'
            f'[listeners.main]\naddress = "127.0.0.1:{port}"\n'
        )
        done = subprocess.run(
            [sys.executable, "-m", "spoolerd.cli", "run", "--config", str(cfg)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 70, done.stderr
    assert f"listeners.main: cannot listen on 127.0.0.1:{port}" in done.stderr


async def test_a_listener_moved_onto_a_taken_address_goes_on_where_it_was(daemon: ListenerDaemon) -> None:
    """The applications keep a listener: moved by a reload onto an address in use, it fails to move,
    says so, and still takes mail on its old address; moved to a free one, it leaves the old."""
    ctl = await daemon.client()
    old = daemon.port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        daemon.port = taken.getsockname()[1]
        daemon.write_config()
        mark = len(daemon.lines)
        [problem] = (await ctl.ok("reload"))["not_applied"]
        failing = await daemon.wait_log(lambda e: e.get("event") == "listener failing", after=mark)
        assert "in use" in failing["error"] and problem.startswith("listeners.main: ")
        assert not [e for e in daemon.lines[mark:] if e.get("event") == "smtp listener closed"]
        on_old = ListenerDaemon.__new__(ListenerDaemon)
        on_old.port = old
        assert await in_thread(sendmail, on_old, "a@example.com", ["bob@localhost"], message("kept")) == {}
        [row] = [r for r in await ctl.ok("status") if r["name"] == "main"]
        assert row["state"] == "failing" and "in use" in row["last_error"]  # the reload's change failed
        assert row["address"] == f"127.0.0.1:{old}" and row["status"] == ["available"]  # where it listens
    daemon.port = old  # the operator puts the address back: where it listens, so no longer failing
    daemon.write_config()
    mark = len(daemon.lines)
    await ctl.ok("reload")
    await daemon.wait_log(lambda e: e.get("event") == "listener available again", after=mark)
    [row] = [r for r in await ctl.ok("status") if r["name"] == "main"]
    assert row["state"] == "online" and row["failing_since"] is None, row  # (last_error is kept)
    daemon.port = free_port()
    daemon.write_config()
    mark = len(daemon.lines)
    await ctl.ok("reload")
    await daemon.wait_log(lambda e: e.get("event") == "smtp listener closed", after=mark)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", old), timeout=5).close()
    assert await in_thread(sendmail, daemon, "a@example.com", ["bob@localhost"], message("moved")) == {}
    [row] = [r for r in await ctl.ok("status") if r["name"] == "main"]
    assert row["state"] == "online" and row["address"] == f"127.0.0.1:{daemon.port}", row


async def test_two_listeners_can_trade_addresses(daemon: ListenerDaemon) -> None:
    """Each moves onto the address the other holds: closed first, as a listener changed in place is,
    or neither could ever move (each new address held by the other's old listener)."""
    ctl = await daemon.client()
    first, second = daemon.port, free_port()
    daemon.extra = f'[listeners.second]\naddress = "127.0.0.1:{second}"'
    daemon.write_config()
    mark = len(daemon.lines)
    await ctl.ok("reload")
    await daemon.wait_log(lambda e: e.get("event") == "smtp listener started", after=mark)
    daemon.port = second
    daemon.extra = f'[listeners.second]\naddress = "127.0.0.1:{first}"'
    daemon.write_config()
    mark = len(daemon.lines)
    await ctl.ok("reload")
    for name in ("main", "second"):
        await daemon.wait_log(
            lambda e, n=name: e.get("event") == "smtp listener started" and e["listener"] == n, after=mark
        )
    rows = {r["name"]: r for r in await ctl.ok("status") if r["resource_type"] == "listener"}
    assert rows["main"]["address"] == f"127.0.0.1:{second}" and rows["main"]["state"] == "online"
    assert rows["second"]["address"] == f"127.0.0.1:{first}" and rows["second"]["state"] == "online"
    assert await in_thread(sendmail, daemon, "a@example.com", ["bob@localhost"], message("traded")) == {}


async def test_reloads_close_behind_each_other_change_the_listener_once_each(daemon: ListenerDaemon) -> None:
    """Each reload changes the listeners in a task of its own: a second one while the first is still
    at it must not open the listener the first is opening (one of them failing on its own address)."""
    first, second = await daemon.client(), await daemon.client()
    mark = len(daemon.lines)
    limits = (1, 2, 3, 2)
    for limit in limits:
        daemon.listener = f"max_recipients = {limit}"
        daemon.write_config()
        async with anyio.create_task_group() as tg:  # two clients asking at once, the same file
            tg.start_soon(first.ok, "reload")
            tg.start_soon(second.ok, "reload")

    def changed(e: dict[str, Any]) -> bool:
        return e.get("event") in ("smtp listener started", "listener failing")

    after = mark
    for _ in limits:  # a change a file: the listener opened once each (or, raced, a failing line)
        line = await daemon.wait_log(changed, after=after)
        after = next(i for i in range(after, len(daemon.lines)) if daemon.lines[i] is line) + 1
    assert not [e for e in daemon.lines[mark:] if e.get("event") == "listener failing"]
    assert len([e for e in daemon.lines[mark:] if e.get("event") == "smtp listener started"]) == len(limits)
    with Raw(daemon.port) as c:  # the last configuration's limit
        c.cmd("EHLO x")
        c.cmd("MAIL FROM:<a@example.com>")
        assert c.cmd("RCPT TO:<a@localhost>").startswith("250")
        assert c.cmd("RCPT TO:<b@localhost>").startswith("250")
        assert c.cmd("RCPT TO:<c@localhost>").startswith("452 4.5.3")

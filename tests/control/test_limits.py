"""No client can lock out the others (#13 part 4), against a real daemon: idle connections are closed,
a uid's connections are capped with room kept for a new one, what a connection makes the daemon hold is
bounded, and every bad input (nested JSON, bad UTF-8, lone surrogates) gets a stable error code."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from tests.control.conftest import Client, Daemon, running
from tests.control.test_tools import run, sendmail


class Limited(Daemon):
    """A daemon with more [control] (and [spooler]) settings than the default one's."""

    control = ""
    spooler = ""

    def write_config(self) -> Path:
        cfg = super().write_config()
        text = cfg.read_text().replace("[control]\n", "[control]\n" + self.control, 1)
        cfg.write_text(text.replace("[spooler]\n", "[spooler]\n" + self.spooler, 1))
        return cfg


class QuickIdle(Limited):
    control = "idle_timeout = 1.0\n"


class SmallBuffers(Limited):
    control = f"max_buffer = {1 << 20}\nmax_buffer_total = {4 << 20}\n"
    spooler = f"message_size_limit = {2 << 20}\n"


class Unthrottled(SmallBuffers):
    control = SmallBuffers.control + "rate = 1000000.0\nburst = 1000000.0\n"


@pytest.fixture
async def unthrottled() -> AsyncIterator[Unthrottled]:
    async for d in running(Unthrottled):
        yield d


@pytest.fixture
async def quick_idle() -> AsyncIterator[QuickIdle]:
    async for d in running(QuickIdle):
        yield d


@pytest.fixture
async def small_buffers() -> AsyncIterator[SmallBuffers]:
    async for d in running(SmallBuffers):
        yield d


async def farewell(client: Client) -> dict[str, object]:
    """The error line a hung-up client is sent, then the end of the stream."""
    with anyio.fail_after(20):
        answer = await client.line()
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            while True:
                await client.stream.receive()
    assert answer["ok"] is False, answer
    return answer["error"]  # type: ignore[no-any-return]


def rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS")


async def test_idle_connections_of_one_user_do_not_lock_out_sendmail(daemon: Daemon) -> None:
    greedy = [await daemon.client() for _ in range(256)]
    assert (await greedy[-1].ok("ping"))["pong"]  # the daemon has taken them all, in order of arrival
    argv, env = sendmail(daemon, "bob@localhost")
    done = await run(*argv, stdin=b"Subject: through\n\nstill queued\n", env=env)
    assert done.returncode == 0, done.stderr  # before: "busy", exit 75, nothing queued
    await daemon.log_line(lambda line: b'"event": "accepted"' in line)
    assert (await farewell(greedy[0]))["code"] == "connection_limit"  # the oldest idle one made room
    assert (await greedy[-2].ok("ping"))["pong"]  # the newest of that uid still work


async def test_an_idle_connection_is_closed_and_a_stream_is_not(quick_idle: QuickIdle) -> None:
    watcher = await quick_idle.client()
    await watcher.stream.send(b'{"id": "w", "cmd": "subscribe"}\n')
    with anyio.fail_after(10):
        assert (await watcher.line())["event"]["type"] == "subscribed"
    idle = await quick_idle.client()
    assert (await idle.ok("ping"))["pong"]
    assert (await farewell(idle))["code"] == "idle_timeout"  # before: open for ever
    answer = await watcher.call("ping")  # idle as long as the other, but streaming: still served
    while "event" in answer:
        answer = await watcher.line()
    assert answer["ok"] is True
    await quick_idle.log_line(lambda line: b'"code": "idle_timeout"' in line and b"hung up" in line)


async def test_twenty_greedy_connections_cannot_swell_the_daemon(daemon: Daemon) -> None:
    assert daemon.proc is not None
    before = rss_mb(daemon.proc.pid)
    line = b'{"id": 1, "cmd": "ping", "args": {"a": [' + b"{}," * 340_000 + b"{}]}}\n"  # < 1 MiB
    greedy = [await daemon.client() for _ in range(20)]
    for c in greedy:
        for _ in range(3):
            await c.stream.send(line)
    for c in greedy:
        for _ in range(3):
            answer = await c.line()
            assert answer["error"]["code"] == "bad_request", answer
    grown = rss_mb(daemon.proc.pid) - before
    assert grown < 150, f"{grown} MB more with 20 greedy connections"  # before: about 490 MB
    assert (await greedy[0].ok("ping"))["pong"]


async def test_bodies_held_at_once_are_bounded_in_total(small_buffers: SmallBuffers) -> None:
    head = json.dumps({"id": 1, "cmd": "submit", "args": {"recipients": ["a@localhost"]}, "body": 2 << 20})
    greedy = []  # kept open: hung up on by the daemon, not by the test
    for _ in range(4):  # each holds 2 MiB less one byte: the total of 4 MiB takes two, not four
        c = await small_buffers.client()
        greedy.append(c)
        with anyio.move_on_after(10), contextlib.suppress(anyio.BrokenResourceError):  # cut off mid-body
            await c.stream.send(head.encode() + b"\n" + b"x" * ((2 << 20) - 1))

    def full(line: bytes) -> bool:
        return b"hung up" in line and b'"code": "buffer_full"' in line

    first = await small_buffers.log_line(full)  # the total takes two: the largest holders make room
    await small_buffers.log_line(full, first + 1)  # before: all four held
    fresh = await small_buffers.client()
    assert (await fresh.ok("ping"))["pong"]  # a new client is served, though the total is full


async def test_answers_and_events_left_unread_are_bounded(unthrottled: Unthrottled) -> None:
    greedy = await unthrottled.client()
    name = "w" * 1000  # echoed in every event line
    streams = b"".join(
        json.dumps({"id": f"{name}{i}", "cmd": "subscribe"}).encode() + b"\n" for i in range(3000)
    )
    with anyio.move_on_after(20), contextlib.suppress(anyio.BrokenResourceError):
        await greedy.stream.send(streams)  # and nothing read: 3 MB of "subscribed" events pile up
    await unthrottled.log_line(lambda line: b'"code": "buffer_full"' in line and b"unread" in line)
    with anyio.fail_after(20), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
        while True:  # what was written before the hang-up, then the end
            await greedy.stream.receive()
    fresh = await unthrottled.client()
    assert (await fresh.ok("ping"))["pong"]


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b'{"id": 1, "cmd": "ping", "args": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}\n", "bad_json"),
        (b"[" * 100_000 + b"\n", "bad_request"),
        (b'{"id": 1, "cmd": "submit", "args": {"sender": "\\ud800@localhost"}}\n', "bad_request"),
        (b'{"id": 1, "cmd": "submit", "args": {"sender": "\xed\xa0\x80@localhost"}}\n', "bad_request"),
        (b'{"id": 1, "cmd": "submit", "args": {"recipients": ["b\xffd@localhost"]}}\n', "bad_request"),
    ],
)
async def test_bad_input_gets_a_bad_request_class_error(daemon: Daemon, line: bytes, code: str) -> None:
    c = await daemon.client()
    answer = await c.raw(line)
    assert answer["ok"] is False and answer["error"]["code"] == code, answer
    assert (await c.ok("ping"))["pong"]  # the same connection goes on


@pytest.mark.parametrize(("option", "code"), [("-f", 65), ("-F", 64), ("-r", 65)])
async def test_sendmail_with_non_utf8_arguments_exits_65_for_an_address(
    daemon: Daemon, option: str, code: int
) -> None:
    """An address that is not UTF-8 is bad data (65, as a bad address in a header); a full name, usage."""
    _argv, env = sendmail(daemon)
    command: list[str | bytes] = [sys.executable, "-m", "spoolerd.sendmail"]
    for args, exits in (([option, b"b\xffd@localhost", "bob@localhost"], code), ([b"b\xffd@localhost"], 65)):
        done = await anyio.run_process(
            [*command, *args], input=b"Subject: x\n\nx\n", env={**os.environ, **env}, check=False
        )
        assert done.returncode == exits, done.stderr  # before: a traceback, or exit 75
        assert b"is not UTF-8 text" in done.stderr and b"Traceback" not in done.stderr

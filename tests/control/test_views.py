"""What an operator reads: ``spoolerctl queue``, ``watch``, the flush progress and ``ls``, run as the
commands a person types against a real daemon."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from spoolerd.views import clock_time
from tests.control.conftest import Client, Daemon
from tests.control.test_tools import ctl, inbox, run, sendmail
from tests.peers.ports import free_port

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


class RelayDaemon(Daemon):
    """A daemon whose "remote" transport keeps to remote.test: other mail goes to a real SMTP relay."""

    def __init__(self, root: Path, relay_port: int) -> None:
        super().__init__(root, extra='accept_domains = ["remote.test"]\n')
        self.relay_port = relay_port

    def write_config(self) -> Path:
        cfg = super().write_config()
        relay = f'provider = "smtp"\nhost = "127.0.0.1"\nport = {self.relay_port}\ntls = "none"\n'
        cfg.write_text(cfg.read_text() + "[transports.relay]\n" + relay)
        return cfg


@asynccontextmanager
async def daemon_with(extra: str = "", relay_port: int | None = None) -> AsyncIterator[Daemon]:
    """A daemon whose "remote" test transport behaves as ``extra`` says (or with a real SMTP relay)."""
    root = Path(tempfile.mkdtemp(prefix="spd"))  # short: a socket path has at most 107 bytes
    os.chmod(root, 0o755)
    d = Daemon(root, extra=extra) if relay_port is None else RelayDaemon(root, relay_port)
    await d.start()
    try:
        yield d
    finally:
        for client in d.clients:
            await client.stream.aclose()
        assert await d.stop() == 0


async def watching(daemon: Daemon) -> Client:
    watch = await daemon.client()
    await watch.stream.send(b'{"id": "w", "cmd": "subscribe"}\n')
    with anyio.fail_after(10):
        assert (await watch.line())["event"]["type"] == "subscribed"
    return watch


async def until_attempted(watch: Client, ids: set[str], kind: str = "deferred") -> None:
    """Wait for a ``kind`` event of each message in ``ids``."""
    waiting = set(ids)
    with anyio.fail_after(30):
        while waiting:
            event = (await watch.line())["event"]
            if event["type"] == kind:
                waiting.discard(event["id"])


async def submit(daemon: Daemon, tmp_path: Path, to: str, subject: str = "hello") -> str:
    mail = tmp_path / f"{to}.eml"
    mail.write_bytes(f"From: me@localhost\nTo: {to}\nSubject: {subject}\n\nbody\n".encode())
    answer = await run(*ctl(daemon, "--json", "submit", str(mail)), check=True)
    return str(json.loads(answer.stdout)["id"])


async def queue_rows(daemon: Daemon) -> list[dict[str, Any]]:
    return json.loads((await run(*ctl(daemon, "--json", "queue"), check=True)).stdout)  # type: ignore[no-any-return]


async def test_queue_shows_a_deferred_recipients_tries_next_try_and_reason(tmp_path: Path) -> None:
    async with daemon_with('temp_fail = ["busy@remote.test"]\n') as daemon:
        watch = await watching(daemon)
        mid = await submit(daemon, tmp_path, "busy@remote.test")
        await until_attempted(watch, {mid})
        text = (await run(*ctl(daemon, "queue"), check=True)).stdout.decode()
        (row,) = await queue_rows(daemon)
        await run(*ctl(daemon, "offline", "remote"), check=True)
        parked = await submit(daemon, tmp_path, "later@remote.test")
        await until_attempted(watch, {parked})
        offline = (await run(*ctl(daemon, "queue"), check=True)).stdout.decode().split("\n" + parked)[1]
    assert re.search(r"pending +0 .* later@remote.test\n +\(waiting: transport remote is offline\)", offline)
    (rcpt,) = row["recipients"]
    assert rcpt["next_attempt"] > time.time() + 200 and rcpt["waiting"] is None  # 5 min: Postfix's
    lines = text.splitlines()
    assert re.match(r"QUEUE ID +AGE +SIZE +STATE +TRIES +NEXT TRY +SENDER / RECIPIENT$", lines[0])
    assert re.match(rf"{mid}  +\d+s +{row['size']}  +queued .* <me@localhost>  \"hello\"$", lines[1]), text
    next_try = clock_time(rcpt["next_attempt"], time.time())
    assert re.match(rf" +deferred +1 +{next_try} \(in [45]m\) +busy@remote.test$", lines[2]), text
    assert lines[3].strip() == "(451 4.3.0 mailbox busy, try later)"
    assert lines[3].index("(") == lines[2].index("busy@")  # under its recipient
    assert "waiting" not in text  # a busy mailbox is not a down relay
    assert lines[-1].startswith("-- 1 message(s)")


async def test_queue_says_which_messages_wait_behind_a_down_relay(tmp_path: Path) -> None:
    async with daemon_with("connection_down = true\n") as daemon:
        watch = await watching(daemon)
        first = await submit(daemon, tmp_path, "a@down.test")
        await until_attempted(watch, {first})  # refused: down.test is now held as down
        second = await submit(daemon, tmp_path, "b@down.test")
        await until_attempted(watch, {second})  # not tried at all: it waits behind the first
        text = (await run(*ctl(daemon, "queue"), check=True)).stdout.decode()
        rows = {r["id"]: r for r in await queue_rows(daemon)}
    waiting = rows[second]["recipients"][0]["waiting"]
    assert waiting["destination"] == "down.test" and waiting["transport"] == "remote"
    until = clock_time(waiting["until"], time.time())
    blocks = text.split("\n" + second)
    assert f"(waiting: down.test via remote is down until {until})" in blocks[1]
    assert re.search(r"pending +0 +.*b@down\.test", blocks[1]), text  # never tried: no try counted
    first_block = blocks[0].split(first, 1)[1]
    assert re.search(r"deferred +1 +.*a@down\.test", first_block)
    assert "(4.4.1 connection refused)" in first_block
    assert "(waiting: down.test via remote is down until" in first_block


async def test_queue_says_so_when_the_smtp_relay_refuses_connections(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: every connection is refused
    async with daemon_with(relay_port=port) as daemon:
        watch = await watching(daemon)
        first = await submit(daemon, tmp_path, "a@example.org")
        await until_attempted(watch, {first})
        second = await submit(daemon, tmp_path, "b@example.org")
        await until_attempted(watch, {second})
        text = (await run(*ctl(daemon, "queue"), check=True)).stdout.decode()
    relay = f"127.0.0.1:{port}"
    assert text.count(f"(waiting: {relay} via relay is down until ") == 2, text
    assert re.search(r"deferred +1 .*a@example\.org\n +\(.*[Cc]onnect", text), text  # the refusal, as said
    assert re.search(r"pending +0 .*b@example\.org\n +\(waiting:", text), text


async def test_watch_prints_time_queue_id_recipient_and_reason(tmp_path: Path) -> None:
    async with daemon_with('temp_fail = ["busy@remote.test"]\n') as daemon:
        proc = subprocess.Popen(ctl(daemon, "watch"), stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
        assert proc.stdout is not None
        try:
            first = await anyio.to_thread.run_sync(proc.stdout.readline)
            assert re.match(rf"{STAMP}  -  watching +-  stores local$", first), first
            mail = tmp_path / "three.eml"
            mail.write_bytes(b"To: ok@remote.test, nobody@remote.test, busy@remote.test\nSubject: s\n\nx\n")
            answer = await run(*ctl(daemon, "--json", "submit", str(mail)), check=True)
            mid = json.loads(answer.stdout)["id"]
            lines: list[str] = []
            with anyio.fail_after(20):
                while not any(" deferred " in line for line in lines) or len(lines) < 3:
                    line = await anyio.to_thread.run_sync(proc.stdout.readline)
                    if " queue " not in line and " new mail " not in line:
                        lines.append(line.rstrip("\n"))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            proc.stdout.close()
    by_rcpt = {line.split()[4]: line for line in lines}
    assert re.match(
        rf"{STAMP}  {mid}  delivered  ok@remote.test  250 2.0.0 accepted via remote$",
        by_rcpt["ok@remote.test"],
    )
    assert re.match(
        rf"{STAMP}  {mid}  failed     nobody@remote.test  550 5.1.1 <nobody@remote.test>: no such user"
        " via remote$",
        by_rcpt["nobody@remote.test"],
    )
    assert re.match(
        rf"{STAMP}  {mid}  deferred   busy@remote.test  451 4.3.0 mailbox busy, try later; "
        r"next try \d\d:\d\d:\d\d via remote$",
        by_rcpt["busy@remote.test"],
    )


def _on_a_terminal(argv: list[str]) -> tuple[int, bytes]:
    """Run ``argv`` with a pseudo-terminal as its stdin, stdout and stderr; its exit code and output."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: every copy of the follower is closed, the command is over
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return proc.wait(timeout=30), out


async def test_flush_progress_on_a_terminal_and_nothing_extra_when_piped(tmp_path: Path) -> None:
    rcpts = [f"r{n}@remote.test" for n in range(5)]
    extra = f"temp_fail = {json.dumps(rcpts)}\ntemp_fail_times = 2\ndelay = 0.4\nconcurrency = 1\n"
    async with daemon_with(extra) as daemon:
        watch = await watching(daemon)
        ids = {await submit(daemon, tmp_path, r) for r in rcpts}
        await until_attempted(watch, ids)  # each tried once and deferred: the queue holds 5
        # piped: a flush of about 2 s (5 sends of 0.4 s, one at a time) prints its answer and nothing else
        piped = await run(*ctl(daemon, "flush", "--force"), check=True)
        assert piped.stderr == b"" and b"\r" not in piped.stdout and b"\x1b" not in piped.stdout
        assert b"flushing" not in piped.stdout and b"deferred=5" in piped.stdout
        # on a terminal: the same flush shows how far it has come, then wipes the line for the answer
        code, out = await anyio.to_thread.run_sync(_on_a_terminal, ctl(daemon, "flush", "--force"))
    assert code == 0, out
    shown = re.findall(rb"flushing \[[#.]{20}\] (\d)/5 messages", out)
    assert shown and int(shown[-1]) >= 2, out  # it moved while the flush ran
    answer = out.rsplit(b"\r\x1b[K", 1)[1]  # the line wiped, then the answer
    assert b"sent=5" in answer and b"flushing" not in answer, out


async def test_ls_shows_raw_utf8_rfc2047_and_latin1_subjects(daemon: Daemon) -> None:
    argv, env = sendmail(daemon, "alice@localhost")
    for content in (
        "Subject: café ☕ raw UTF-8\n\nx\n".encode(),
        b"Subject: =?utf-8?q?cr=C3=A8me_br=C3=BBl=C3=A9e?=\n\nx\n",
        "Subject: naïve Latin-1\n\nx\n".encode("latin-1"),
    ):
        await run(*argv, stdin=content, env=env, check=True)
    await run(*ctl(daemon, "flush"), check=True)
    listing = (await run(*ctl(daemon, "ls", "inbox"), check=True)).stdout.decode("utf-8")
    for subject in ("café ☕ raw UTF-8", "crème brûlée", "naïve Latin-1"):
        assert subject in listing, listing
    assert "\ufffd" not in listing
    ascii_only = await run(*ctl(daemon, "ls", "inbox"), env={"PYTHONIOENCODING": "ascii"}, check=True)
    assert b"caf? ? raw UTF-8" in ascii_only.stdout  # a terminal without the characters: '?', no crash
    assert sorted(m["subject"] for m in await inbox(daemon)) == [
        "café ☕ raw UTF-8",
        "crème brûlée",
        "naïve Latin-1",
    ]

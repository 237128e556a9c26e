"""Relay throughput: spoolerd's SMTP transport against Postfix, both delivering to the same smtp-sink.

    python bench/relay.py [--messages 10000] [--recipients 1 5] [--json FILE]   (as root)

For each recipient count, in one run:
  spoolerd  N messages (4 KB) are queued durably in a SQLite store; a daemon (its own process, for an
            honest peak RSS) then delivers them through the SMTP transport to smtp-sink. Timed from the
            daemon's start until every per-recipient outcome is recorded and every message finished.
  postfix   the same N messages are injected over SMTP into a private Postfix that puts them on hold;
            they are released (postsuper -H, postqueue -f) and timed until smtp-sink has them all.
  postfix   (through) the same messages injected into a fresh private Postfix that relays them on at
            once, timed from the first injection until smtp-sink has them all: Postfix as a relay works.
The spoolerd and "held" legs both start from a full queue, so neither counts intake; "through" counts
Postfix's intake too, which is the only way messages reach it. Prints messages/second and both ratios
(target: spoolerd >= 3x Postfix).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pty
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.peers, when run as a script

import aiosmtplib

from tests.peers.ports import free_port
from tests.peers.postfix import Postfix, available

SENDER = "bench@localhost"


def content(i: int) -> bytes:
    return (
        f"From: bench@localhost\r\nTo: sink@remote.test\r\nSubject: bench {i}\r\n"
        f"Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{i}@bench.test>\r\n\r\n"
    ).encode() + (b"x" * 76 + b"\r\n") * 52  # ~4 KB


class Sink:
    """smtp-sink and its running counter (-c: ``sess=S quit=Q mesg=M`` per event), read from a pty since
    smtp-sink buffers its output when it is not a terminal."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages = 0
        self._changed = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        master, slave = pty.openpty()
        self.proc = await asyncio.create_subprocess_exec(
            "smtp-sink", "-c", "-u", "postfix", f"127.0.0.1:{self.port}", "1000", stdout=slave
        )
        os.close(slave)
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(master, "rb", 0))
        self._reader = loop.create_task(self._read(reader))
        for _ in range(100):  # ready when it accepts a connection
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
        raise RuntimeError("smtp-sink did not start")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):  # EIO once smtp-sink is gone
            while chunk := await reader.read(1 << 16):
                found = re.findall(rb"mesg=(\d+)", chunk)
                if found:
                    self.messages = int(found[-1])
                    self._changed.set()

    async def wait_for(self, count: int, limit: float = 900.0) -> None:
        async with asyncio.timeout(limit):
            while self.messages < count:
                self._changed.clear()
                await self._changed.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


# ----------------------------------------------------------------------------------------- spoolerd


def config(state_dir: str, sink_port: int) -> dict[str, Any]:
    return {
        "spooler": {"state_dir": state_dir, "preprocessors": [], "max_in_flight": 256},
        "control": {"enabled": False},
        "stores": {"local": {"provider": "sqlite", "addresses": ["@localhost"]}},
        "transports": {
            "relay": {
                "provider": "smtp",
                "host": "127.0.0.1",
                "port": sink_port,
                "tls": "none",
                "helo": "bench.test",
                "pool_size": 16,
                "destination_concurrency": 16,
                "messages_per_connection": 1000,
                "concurrency": 16,
            }
        },
    }


async def prefill(state_dir: str, sink_port: int, messages: int, recipients: int) -> None:
    """Queue the messages durably, with no spooler running."""
    from spoolerd.config import open_stores, parse_config
    from spoolerd.message import Draft, FolderRole, NewRecipient
    from spoolerd.plugins import PluginRegistry

    opened = open_stores(parse_config(config(state_dir, sink_port)), PluginRegistry())
    store = opened.stores["local"]
    await store.start()
    try:
        outbox = await store.folder(FolderRole.OUTBOX)
        sent = await store.folder(FolderRole.SENT)
        rcpts = [NewRecipient(f"r{j}@remote.test") for j in range(recipients)]
        for start in range(0, messages, 500):
            ids = await asyncio.gather(
                *(
                    store.create_message(
                        outbox.id, Draft(content(i), rcpts, sender=SENDER, sentmail_folder=sent.id)
                    )
                    for i in range(start, min(messages, start + 500))
                )
            )
            await asyncio.gather(*(store.submit(mid) for mid in ids))
    finally:
        await store.stop()


async def spoolerd_leg(state_dir: str, sink_port: int) -> dict[str, Any]:
    """Run in a child process: start the daemon on the full queue, time until the queue is empty."""
    from spoolerd.config import parse_config
    from spoolerd.daemon import build, running
    from spoolerd.logsetup import configure_logging
    from spoolerd.message import FolderRole, RecipientState
    from spoolerd.plugins import PluginRegistry

    daemon = build(parse_config(config(state_dir, sink_port)), PluginRegistry())
    configure_logging(daemon.config.log)  # as the daemon logs: a mail line per recipient, on stderr
    store = daemon.stores["local"]
    started = time.perf_counter()
    async with running(daemon):
        while await store.next_due() is not None or daemon.spooler.in_flight:
            await daemon.spooler.flush()
        elapsed = time.perf_counter() - started
        sent = await store.list_messages((await store.folder(FolderRole.SENT)).id)
        sample = await store.open(sent[-1].id)
        assert all(r.state is RecipientState.DELIVERED for r in sample.recipients), sample.recipients
        counters = daemon.spooler.counters
    return {
        "seconds": elapsed,
        "finished": len(sent),
        "delivered_recipients": counters.delivered,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


async def run_spoolerd(sink: Sink, messages: int, recipients: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as state_dir:
        await prefill(state_dir, sink.port, messages, recipients)
        before = sink.messages
        child = await asyncio.create_subprocess_exec(  # its mail log is written (and dropped)
            sys.executable, __file__, "--leg", state_dir, str(sink.port), stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = await child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"spoolerd leg failed ({child.returncode})")
        result: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
        await sink.wait_for(before + messages, limit=30)
        assert result["finished"] == messages, result
        assert result["delivered_recipients"] == messages * recipients, result
        result["messages_per_second"] = messages / result["seconds"]
        return result


# ------------------------------------------------------------------------------------------ Postfix


async def inject(port: int, messages: int, recipients: int, connections: int = 16) -> None:
    rcpts = [f"r{j}@remote.test" for j in range(recipients)]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(messages):
        queue.put_nowait(i)

    async def worker() -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=60) as smtp:
            while not queue.empty():
                i = queue.get_nowait()
                refused, _ = await smtp.sendmail(SENDER, rcpts, content(i))
                assert not refused, refused

    await asyncio.gather(*(worker() for _ in range(connections)))


async def run_postfix(sink: Sink, messages: int, recipients: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="pfxb"))
    checks = root / "hold.regexp"
    checks.write_text("/^Subject: bench/ HOLD\n")
    postfix = Postfix(
        free_port(),
        relayhost=f"[127.0.0.1]:{sink.port}",
        settings={"header_checks": f"regexp:{checks}", "queue_run_delay": "300s"},
    )
    postfix.start()
    try:
        await inject(postfix.port, messages, recipients)
        held = sum(1 for p in (postfix.root / "queue" / "hold").rglob("*") if p.is_file())
        assert held == messages, f"{held} of {messages} on hold"
        before = sink.messages
        started = time.perf_counter()
        for command in (["postsuper", "-H", "ALL"], ["postqueue", "-f"]):
            tool = await asyncio.create_subprocess_exec(command[0], "-c", str(postfix.root), *command[1:])
            assert await tool.wait() == 0, command
        await sink.wait_for(before + messages)
        elapsed = time.perf_counter() - started
    finally:
        postfix.stop()
    return {"seconds": elapsed, "messages_per_second": messages / elapsed}


async def run_postfix_through(sink: Sink, messages: int, recipients: int) -> dict[str, Any]:
    """Postfix as a relay is used: the messages injected over SMTP (16 connections) and relayed on at
    once; timed from the first injection until the sink has them all."""
    postfix = Postfix(free_port(), relayhost=f"[127.0.0.1]:{sink.port}")
    postfix.start()
    try:
        before = sink.messages
        started = time.perf_counter()
        await inject(postfix.port, messages, recipients)
        await sink.wait_for(before + messages)
        elapsed = time.perf_counter() - started
    finally:
        postfix.stop()
    return {"seconds": elapsed, "messages_per_second": messages / elapsed}


# ------------------------------------------------------------------------------------------------


async def bench(messages: int, recipient_counts: list[int]) -> list[dict[str, Any]]:
    sink = Sink()
    await sink.start()
    rows = []
    try:
        for recipients in recipient_counts:
            ours = await run_spoolerd(sink, messages, recipients)
            theirs = await run_postfix(sink, messages, recipients)
            through = await run_postfix_through(sink, messages, recipients)
            rows.append(
                {
                    "messages": messages,
                    "recipients": recipients,
                    "spoolerd": ours,
                    "postfix": theirs,
                    "postfix_through": through,
                    "ratio": ours["messages_per_second"] / theirs["messages_per_second"],
                    "ratio_through": ours["messages_per_second"] / through["messages_per_second"],
                }
            )
    finally:
        await sink.stop()
    return rows


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--leg":
        from spoolerd import eventloop  # the daemon's own choice of loop

        print(json.dumps(eventloop.run(spoolerd_leg, sys.argv[2], int(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--recipients", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "relay.json"))
    args = parser.parse_args()
    reason = available()
    if reason:
        sys.exit(f"bench/relay.py: {reason}")
    rows = asyncio.run(bench(args.messages, args.recipients))
    print(f"{'rcpts':>5} {'messages':>8} {'spoolerd msg/s':>15} {'postfix held':>13} {'ratio':>6}", end="")
    print(f" {'postfix through':>16} {'ratio':>6} {'RSS MB':>7}")
    for row in rows:
        print(
            f"{row['recipients']:>5} {row['messages']:>8} {row['spoolerd']['messages_per_second']:>15,.0f}"
            f" {row['postfix']['messages_per_second']:>13,.0f} {row['ratio']:>6.2f}"
            f" {row['postfix_through']['messages_per_second']:>16,.0f} {row['ratio_through']:>6.2f}"
            f" {row['spoolerd']['peak_rss_mb']:>7.0f}"
        )
    print("postfix held: delivery from a full queue (held, then released); postfix through: injected")
    print("over SMTP and relayed at once, timed from the first injection (how a relay is used)")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

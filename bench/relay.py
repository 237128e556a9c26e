"""spoolerd against Postfix, like for like: both at their shipped defaults, the same messages, the same
smtp-sink, the same client, in one run.

    python bench/relay.py [--messages 10000] [--large-messages 500] [--recipients 1 5]
                          [--sizes 4096 1048576] [--legs held socket smtp] [--json FILE] [--quick]
    (as root: a private Postfix needs it)

For each message size and recipient count, three legs, each timed until the last message is counted at
smtp-sink (``Sink.wait_for``):

  held    delivery from a held queue, intake not counted.
          spoolerd: the messages are queued in the daemon's own store (its config, its SQLite file, one
          ``submit_new`` each as the control socket does, so the default ``headers`` preprocessor runs at
          delivery), then the daemon starts on that queue (``build`` + ``running``, its own process);
          timed from the start of ``running``.
          Postfix: the messages go in over SMTP while a header_checks HOLD keeps them on hold; timed from
          ``postsuper -H ALL`` + ``postqueue -f``.
  socket  intake plus relay: spoolerd's control socket (16 connections, the submit command with the
          message as its body) against Postfix's smtpd (16 SMTP sessions); timed from the first submit.
  smtp    intake plus relay: spoolerd's SMTP listener against Postfix's smtpd, the same SMTP client
          (16 sessions, pipelining, harness.inject) for both; timed from the first connection.

(spoolerd-sendmail against Postfix's sendmail is bench/sendmail.py.) Each row prints both rates, the
ratio, each side's peak RSS (spoolerd: its process's VmHWM; Postfix: the sum of its processes' VmHWM)
and the load averages before and after, and what each side's timed window cost the whole machine and
smtp-sink in CPU per message (/proc: every process, clients and sink included; the sink's share is the
receiving end's, which neither side can make cheaper: at 1 MB it bounds both); ``--json`` writes all of
it. ``--quick`` is a smoke test (a few 4 KB messages, one recipient, every leg).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.peers, when run as a script
sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness, when run as a script

from harness import (  # type: ignore[import-not-found]
    SENDER,
    Sink,
    content,
    cpu_seconds,
    inject,
    load,
    machine_cpu,
    postfix_memory,
    process_cpu,
    recipients,
    spoolerd,
    spoolerd_config,
    vm_hwm_mb,
)

from tests.peers.ports import free_port
from tests.peers.postfix import Postfix, available

CONNECTIONS = 16
LEGS = ("held", "socket", "smtp")


def rate(messages: int, seconds: float) -> float:
    return messages / seconds if seconds > 0 else 0.0


def cpu_mark(sink_pid: int) -> tuple[float, float]:
    """The machine's busy CPU seconds and smtp-sink's, now: a leg's window is the difference of two."""
    return machine_cpu(), process_cpu(sink_pid)


def cpu_used(
    mark: tuple[float, float], sink: Sink, messages: int, end: tuple[float, float] | None = None
) -> dict[str, float]:
    """CPU per message (ms) from ``mark`` to ``end`` (now): the whole machine's, and smtp-sink's share."""
    machine, at_sink = end or cpu_mark(sink.proc.pid)
    return {
        "machine_cpu_ms_per_message": (machine - mark[0]) * 1000 / messages,
        "sink_cpu_ms_per_message": (at_sink - mark[1]) * 1000 / messages,
    }


# ------------------------------------------------------------------------------------------ held


async def prefill(config_path: str, messages: int, rcpts: int, size: int) -> None:
    """Queue the messages in the daemon's store as its submit command does, with no daemon running."""
    from spoolerd.config import load_config, open_stores
    from spoolerd.message import NewRecipient
    from spoolerd.outgoing import outgoing_draft, submit_outgoing
    from spoolerd.plugins import PluginRegistry
    from spoolerd.retention import filing

    registry = PluginRegistry()
    config = load_config(config_path, registry)
    opened = open_stores(config, registry)
    store = opened.stores[opened.default]
    filed = filing(config.stores[opened.default].sent_copies)
    to = [NewRecipient(address) for address in recipients(rcpts)]
    await store.start()
    try:
        for start in range(0, messages, 256):

            async def one(i: int) -> str:
                draft = await outgoing_draft(
                    store, content(i, size), to, sender=SENDER, subject=f"bench {i}",
                    sentmail=filed.sentmail, delete_after_submit=filed.delete_after_submit,
                )  # fmt: skip
                return await submit_outgoing(store, draft, preprocess=bool(config.spooler.preprocessors))

            await asyncio.gather(*(one(i) for i in range(start, min(messages, start + 256))))
    finally:
        await store.stop()


async def held_leg(config_path: str, sink_pid: int) -> dict[str, Any]:
    """Run in a child process: the daemon on the full queue until every recipient has its outcome."""
    from spoolerd.config import load_config
    from spoolerd.daemon import build, running
    from spoolerd.logsetup import configure_logging
    from spoolerd.plugins import PluginRegistry

    registry = PluginRegistry()
    daemon = build(load_config(config_path, registry), registry)
    configure_logging(daemon.config.log)  # as the daemon logs: a mail line per recipient, on stderr
    store = daemon.stores[daemon.config.spooler.default_store]
    started = time.monotonic()  # one clock for every process of the machine: the parent reads it
    mark = cpu_mark(sink_pid)  # the parent reads the window's end
    cpu = cpu_seconds()
    # the queue is due: the daemon delivers it as it would after any start, asked nothing (Postfix's
    # side is released and flushed); every attempt's end is an event, and the leg ends with the last
    async with running(daemon), daemon.spooler.events.subscribe() as ended:
        while await store.next_due() is not None or daemon.spooler.in_flight:
            await asyncio.wait_for(ended.receive(), 60)
            ended.pending()
        counters = daemon.spooler.counters
    return {
        "started": started,
        "cpu_mark": mark,
        "delivered_recipients": counters.delivered,
        # VmHWM: this process's own peak (ru_maxrss also counts the bench's process it was forked from,
        # which had filled the queue: 312 MB shown for 300 x 1 MB where the daemon peaked at 133)
        "peak_rss_mb": vm_hwm_mb(os.getpid()),
        # the daemon's own CPU (every thread, user + sys) per recipient: less moved by a busy machine
        "cpu_ms_per_recipient": (cpu_seconds() - cpu) * 1000 / max(1, counters.delivered),
    }


async def spoolerd_held(sink: Sink, messages: int, rcpts: int, size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as state_dir:
        config_path = Path(state_dir) / "spoolerd.toml"
        config_path.write_text(spoolerd_config(state_dir, sink.port))
        await prefill(str(config_path), messages, rcpts, size)
        before = sink.messages
        child = await asyncio.create_subprocess_exec(  # its mail log is written (and dropped)
            sys.executable, __file__, "--leg", str(config_path), str(sink.proc.pid), stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

        async def last_arrival() -> tuple[float, tuple[float, float]]:
            # the window ends with the last message at the sink, as Postfix's does: not the daemon's stop
            arrived = await sink.wait_for(before + messages, limit=1800)
            return arrived, cpu_mark(sink.proc.pid)

        ending = asyncio.ensure_future(last_arrival())
        out, _ = await child.communicate()
        if child.returncode != 0:
            ending.cancel()
            raise RuntimeError(f"spoolerd leg failed ({child.returncode})")
        result: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
        arrived, end = await asyncio.wait_for(ending, 60)
        assert result["delivered_recipients"] == messages * rcpts, result
        seconds = arrived - result.pop("started")
        used = cpu_used(tuple(result.pop("cpu_mark")), sink, messages, end)
        return {"seconds": seconds, "messages_per_second": rate(messages, seconds), **used, **result}


async def postfix_held(sink: Sink, messages: int, rcpts: int, size: int) -> dict[str, Any]:
    postfix = Postfix(
        free_port(),
        relayhost=f"[127.0.0.1]:{sink.port}",
        settings={"header_checks": "regexp:${config_directory}/hold.regexp", "queue_run_delay": "3600s"},
    )  # the hold is the only difference; no queue run starts before the release
    (postfix.root / "hold.regexp").write_text("/^Subject: bench/ HOLD\n")  # removed with the instance
    postfix.start()
    try:
        await inject(postfix.port, messages, rcpts, size, CONNECTIONS)
        held = sum(1 for p in (postfix.root / "queue" / "hold").rglob("*") if p.is_file())
        assert held == messages, f"{held} of {messages} on hold"
        before = sink.messages
        started, mark = time.monotonic(), cpu_mark(sink.proc.pid)
        for command in (["postsuper", "-H", "ALL"], ["postqueue", "-f"]):
            tool = await asyncio.create_subprocess_exec(
                command[0], "-c", str(postfix.root), *command[1:], stderr=subprocess.DEVNULL
            )
            assert await tool.wait() == 0, command
        seconds = await sink.wait_for(before + messages) - started
        used = cpu_used(mark, sink, messages)
        memory = postfix_memory(postfix.root)
    finally:
        postfix.stop()
    return {"seconds": seconds, "messages_per_second": rate(messages, seconds), **used, **memory}


# ------------------------------------------------------------------------------------ intake + relay


async def submit_over_socket(path: Path, messages: int, rcpts: int, size: int) -> None:
    """The control socket's submit, the message as the request's body, ``CONNECTIONS`` at once."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(messages):
        queue.put_nowait(i)

    async def worker() -> None:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 20)
        try:
            while not queue.empty():
                i = queue.get_nowait()
                body = content(i, size)
                args = {"sender": SENDER, "recipients": recipients(rcpts)}
                request = {"id": i, "cmd": "submit", "args": args, "body": len(body)}
                writer.write(json.dumps(request).encode() + b"\n" + body)
                answer = json.loads(await asyncio.wait_for(reader.readline(), 120))
                assert answer.get("ok"), answer
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(min(CONNECTIONS, messages))))


async def spoolerd_intake(sink: Sink, leg: str, messages: int, rcpts: int, size: int) -> dict[str, Any]:
    listen = free_port()
    with tempfile.TemporaryDirectory() as state_dir:
        async with spoolerd(state_dir, spoolerd_config(state_dir, sink.port, listen)) as daemon:
            before = sink.messages
            started, mark = time.monotonic(), cpu_mark(sink.proc.pid)
            if leg == "socket":
                await submit_over_socket(daemon.socket, messages, rcpts, size)
            else:
                await inject(listen, messages, rcpts, size, CONNECTIONS)
            seconds = await sink.wait_for(before + messages) - started
            used = cpu_used(mark, sink, messages)
            peak = daemon.peak_rss_mb()
    return {"seconds": seconds, "messages_per_second": rate(messages, seconds), "peak_rss_mb": peak, **used}


async def postfix_intake(sink: Sink, messages: int, rcpts: int, size: int) -> dict[str, Any]:
    postfix = Postfix(free_port(), relayhost=f"[127.0.0.1]:{sink.port}")
    postfix.start()
    try:
        before = sink.messages
        started, mark = time.monotonic(), cpu_mark(sink.proc.pid)
        await inject(postfix.port, messages, rcpts, size, CONNECTIONS)
        seconds = await sink.wait_for(before + messages) - started
        used = cpu_used(mark, sink, messages)
        memory = postfix_memory(postfix.root)
    finally:
        postfix.stop()
    return {"seconds": seconds, "messages_per_second": rate(messages, seconds), **used, **memory}


# ------------------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    sink = Sink()
    await sink.start()
    rows = []
    try:
        for size in args.sizes:
            messages = args.messages if size <= 64 * 1024 else args.large_messages
            for rcpts in args.recipients:
                postfix_smtpd: dict[str, Any] | None = None  # one Postfix intake run serves both legs
                for leg in args.legs:
                    loadavg = load()
                    if leg == "held":
                        ours = await spoolerd_held(sink, messages, rcpts, size)
                        theirs = await postfix_held(sink, messages, rcpts, size)
                    else:
                        ours = await spoolerd_intake(sink, leg, messages, rcpts, size)
                        if postfix_smtpd is None:
                            postfix_smtpd = await postfix_intake(sink, messages, rcpts, size)
                        theirs = postfix_smtpd
                    row = {"leg": leg, "size": size, "messages": messages, "recipients": rcpts,
                           "spoolerd": ours, "postfix": theirs,
                           "ratio": ours["messages_per_second"] / theirs["messages_per_second"],
                           "load_before": loadavg, "load_after": load()}  # fmt: skip
                    rows.append(row)
                    print_row(row)
    finally:
        await sink.stop()
    return rows


HEADER = (
    f"{'leg':<7}{'size':>8}{'rcpts':>6}{'msgs':>7}{'spoolerd/s':>11}{'postfix/s':>10}{'ratio':>7}"
    f"{'RSS MB s/p':>12}{'p PSS':>6}{'CPU ms/msg s/p':>16}{'sink s/p':>12}  load before -> after"
)


def print_row(row: dict[str, Any]) -> None:
    ours, theirs = row["spoolerd"], row["postfix"]
    print(
        f"{row['leg']:<7}{row['size']:>8}{row['recipients']:>6}{row['messages']:>7}"
        f"{ours['messages_per_second']:>11,.0f}{theirs['messages_per_second']:>10,.0f}{row['ratio']:>7.2f}"
        f"{ours['peak_rss_mb']:>6.0f}/{theirs['peak_rss_mb']:<5.0f}{theirs['pss_mb']:>6.0f}"
        f"{ours['machine_cpu_ms_per_message']:>9.2f}/{theirs['machine_cpu_ms_per_message']:<6.2f}"
        f"{ours['sink_cpu_ms_per_message']:>6.2f}/{theirs['sink_cpu_ms_per_message']:<5.2f}"
        f"  {'/'.join(map(str, row['load_before']))} -> {'/'.join(map(str, row['load_after']))}",
        flush=True,
    )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--leg":
        from spoolerd import eventloop  # the daemon's own choice of loop

        print(json.dumps(eventloop.run(held_leg, sys.argv[2], int(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="messages of 4 KB per row")
    parser.add_argument("--large-messages", type=int, default=500, help="messages per row above 64 KB")
    parser.add_argument("--recipients", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 1 << 20])
    parser.add_argument("--legs", nargs="+", choices=LEGS, default=list(LEGS))
    parser.add_argument("--quick", action="store_true", help="a smoke test: 20 x 4 KB, 1 recipient")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "relay.json"))
    args = parser.parse_args()
    if args.quick:
        args.messages, args.recipients, args.sizes = 20, [1], [4096]
    reason = available()
    if reason:
        sys.exit(f"bench/relay.py: {reason}")
    print(HEADER, flush=True)
    rows = asyncio.run(bench(args))
    print("held: delivery from a held queue; socket / smtp: intake plus relay (vs Postfix's smtpd);")
    print("both sides at their defaults, the same messages and smtp-sink; RSS: peak, spoolerd/Postfix")
    print("(Postfix: the sum of its processes' peaks, an upper bound); p PSS: Postfix's footprint at end;")
    print("CPU: ms a message, the whole machine's over the timed window (clients, sink included); sink: its")
    print("share (the receiving end, the same work for both sides)")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"(json: {out})")


if __name__ == "__main__":
    main()

"""SMTP intake to relay, like for like: Postfix's smtp-source -> spoolerd's listener -> spoolerd's smtp
relay -> smtp-sink, against smtp-source -> Postfix smtpd -> Postfix relay -> smtp-sink.

    python bench/listener.py [--messages 10000] [--recipients 1 5] [--json FILE]   (as root)

Both sides run at their defaults (spoolerd: a listener on the default store, the smtp transport with
tls = "none"; Postfix: a private instance with a relayhost), in one run, with the same client:
smtp-source, 16 sessions that each keep their connection (-d), 4 KB messages, 1 and 5 recipients.
Throughput is messages/second from smtp-source's start to the last message at the sink. Alongside the
load, a probe client on its own connection sends messages one after another and times each from the end
of DATA (``<CRLF>.<CRLF>`` sent) to the 250: p50 and p99 of that, for each side. Also the machine's CPU
per message (/proc/stat, every process: clients and sink included, the same for both sides; less moved
by a busy machine than the rate) and its load averages at the end. Target: spoolerd >= 2x Postfix, p50
250-latency no worse.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.peers, when run as a script
sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness.py, when run as a script

from harness import Sink, content, machine_cpu, spoolerd, spoolerd_config  # type: ignore[import-not-found]

from tests.peers.ports import free_port
from tests.peers.postfix import Postfix, available

SENDER = "bench@bench.test"
SESSIONS = 16


class Probe(threading.Thread):
    """One connection, one message at a time: end of DATA to 250, in seconds."""

    def __init__(self, port: int, recipients: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.recipients = recipients
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            f = sock.makefile("rb")
            _reply(f)
            sock.sendall(b"EHLO probe.bench.test\r\n")
            _reply(f)
            body = content(0).replace(b"\r\n.", b"\r\n..")
            rcpts = b"".join(f"RCPT TO:<p{j}@remote.test>\r\n".encode() for j in range(self.recipients))
            while not self.stop.is_set():
                sock.sendall(f"MAIL FROM:<{SENDER}>\r\n".encode() + rcpts + b"DATA\r\n")
                for _ in range(self.recipients + 2):
                    _reply(f)
                sock.sendall(body)
                started = time.perf_counter()
                sock.sendall(b".\r\n")
                reply = _reply(f)
                self.latencies.append(time.perf_counter() - started)
                assert reply.startswith(b"250"), reply
            sock.sendall(b"QUIT\r\n")


def _reply(f: Any) -> bytes:
    while True:
        line: bytes = f.readline()
        if len(line) < 4 or line[3:4] != b"-":
            return line


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def drive(sink: Sink, port: int, messages: int, recipients: int) -> dict[str, Any]:
    """smtp-source's load plus the probe, timed from the first connection to the last message at the
    sink."""
    probe = Probe(port, recipients)
    before = sink.messages
    started, cpu = time.perf_counter(), machine_cpu()
    source = await asyncio.create_subprocess_exec(
        "smtp-source", "-d", "-s", str(SESSIONS), "-m", str(messages), "-l", "4096",
        "-r", str(recipients), "-f", SENDER, "-t", "load@remote.test", f"127.0.0.1:{port}",
    )  # fmt: skip
    probe.start()
    code = await source.wait()
    probe.stop.set()
    await asyncio.to_thread(probe.join, 60)
    assert code == 0, f"smtp-source exited {code}"
    await sink.wait_for(before + messages + len(probe.latencies))
    elapsed, cpu = time.perf_counter() - started, machine_cpu() - cpu
    lat = probe.latencies
    return {
        "seconds": elapsed,
        "messages_per_second": messages / elapsed,
        "latency_samples": len(lat),
        "latency_p50_ms": percentile(lat, 50) * 1000,
        "latency_p99_ms": percentile(lat, 99) * 1000,
        # every process's: the clients, the sink and whatever else runs, as for the rate
        "machine_cpu_ms_per_message": cpu * 1000 / (messages + len(lat)),
    }


async def run_spoolerd(sink: Sink, messages: int, recipients: int) -> dict[str, Any]:
    listen = free_port()
    with tempfile.TemporaryDirectory() as state_dir:
        async with spoolerd(state_dir, spoolerd_config(state_dir, sink.port, listen)):
            return await drive(sink, listen, messages, recipients)


async def run_postfix(sink: Sink, messages: int, recipients: int) -> dict[str, Any]:
    postfix = Postfix(free_port(), relayhost=f"[127.0.0.1]:{sink.port}")
    postfix.start()
    try:
        return await drive(sink, postfix.port, messages, recipients)
    finally:
        postfix.stop()


async def bench(messages: int, recipient_counts: list[int]) -> list[dict[str, Any]]:
    sink = Sink()
    await sink.start()
    rows = []
    try:
        for recipients in recipient_counts:
            ours = await run_spoolerd(sink, messages, recipients)
            theirs = await run_postfix(sink, messages, recipients)
            rows.append(
                {
                    "messages": messages,
                    "recipients": recipients,
                    "sessions": SESSIONS,
                    "spoolerd": ours,
                    "postfix": theirs,
                    "ratio": ours["messages_per_second"] / theirs["messages_per_second"],
                    "load_average": os.getloadavg(),
                    "cpus": os.cpu_count(),
                }
            )
    finally:
        await sink.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--recipients", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "listener.json"))
    args = parser.parse_args()
    reason = available()
    if reason:
        sys.exit(f"bench/listener.py: {reason}")
    rows = asyncio.run(bench(args.messages, args.recipients))
    print(f"{'rcpts':>5} {'messages':>8} {'spoolerd msg/s':>15} {'postfix msg/s':>14} {'ratio':>6}", end="")
    print(f" {'250 p50/p99 ms spoolerd':>24} {'postfix':>14} {'CPU ms/msg s/p':>15} {'load 1/5/15':>16}")
    for row in rows:
        ours, theirs = row["spoolerd"], row["postfix"]
        print(
            f"{row['recipients']:>5} {row['messages']:>8} {ours['messages_per_second']:>15,.0f}"
            f" {theirs['messages_per_second']:>14,.0f} {row['ratio']:>6.2f}"
            f" {ours['latency_p50_ms']:>12.1f} / {ours['latency_p99_ms']:<9.1f}"
            f" {theirs['latency_p50_ms']:>5.1f} / {theirs['latency_p99_ms']:<6.1f}"
            f" {ours['machine_cpu_ms_per_message']:>7.2f}/{theirs['machine_cpu_ms_per_message']:<7.2f}"
            f" {'/'.join(f'{x:.1f}' for x in row['load_average']):>16}"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"(json: {out})")


if __name__ == "__main__":
    main()

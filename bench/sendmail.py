"""spoolerd-sendmail against Postfix's sendmail, side by side: serial submits a second, and the time from
starting the command to the message at smtp-sink (p50, p99).

    python bench/sendmail.py [--submits 300] [--latency 100] [--rounds 3] [--json FILE] [--quick]
    (as root: a private Postfix needs it)

Both sides at their defaults, delivering to the same smtp-sink: a running ``spoolerd run`` (harness's
default config; the command reaches it through $SPOOLERD_SOCKET) and a private Postfix with a relayhost
(``sendmail -C DIR``, which hands the message to postdrop). spoolerd-sendmail runs as shipped: the
project's wheel installed (not editable) into a fresh venv **without its dependencies**, so a submit that
imported pydantic, structlog or anyio would fail here instead of running slowly.

  serial   one command after the other, each waited for (``sendmail -i -f SENDER rcpt < 4 KB``), the
           sides alternating in ``--rounds`` rounds against the machine's drift; submits/s is commands /
           the time they took (the deliveries that follow are not timed).
  latency  one message at a time, each waited for at the sink before the next: from starting the command
           to smtp-sink counting the message (submit, queue, relay: a 4 KB message's first and last byte
           are one write apart on loopback). Also the command's own time (start to exit).
Targets (issue #17): serial submits >= 0.5x Postfix's, latency p50 <= 2x Postfix's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.peers, when run as a script
sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness, when run as a script

from harness import SENDER, Sink, content, load, spoolerd, spoolerd_config  # type: ignore[import-not-found]

from tests.peers.ports import free_port
from tests.peers.postfix import Postfix, available

ROOT = Path(__file__).resolve().parents[1]
RCPT = "r0@remote.test"

Command = Callable[[int], list[str]]


def install_shipped(where: Path) -> Path:
    """The project's wheel in a fresh venv, without dependencies: its ``spoolerd-sendmail``."""
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    wheels = where / "wheels"
    pip = [sys.executable, "-m", "pip", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True)  # fmt: skip
    wheel = next(wheels.glob("spoolerd-*.whl"))
    subprocess.run([*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index",
                    str(wheel)], check=True)  # fmt: skip
    return venv / "bin" / "spoolerd-sendmail"


async def run(argv: list[str], stdin: bytes, env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    _, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {err.decode(errors='replace')}")


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


class Side:
    """One side's command, its environment and what it measured."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.serial_seconds = 0.0
        self.serial_count = 0
        self.latencies: list[float] = []
        self.exits: list[float] = []

    async def serial(self, sink: Sink, first: int, count: int) -> None:
        before = sink.messages
        started = time.monotonic()
        for i in range(first, first + count):
            await run(self.argv, content(i), self.env)
        self.serial_seconds += time.monotonic() - started
        self.serial_count += count
        await sink.wait_for(before + count, limit=300)  # delivered before the other side's turn

    async def latency(self, sink: Sink, i: int) -> None:
        before = sink.messages
        started = time.monotonic()
        await run(self.argv, content(i), self.env)
        self.exits.append(time.monotonic() - started)
        self.latencies.append(await sink.wait_for(before + 1, limit=60) - started)

    def result(self) -> dict[str, Any]:
        ms = 1000
        return {
            "submits": self.serial_count,
            "submits_per_second": self.serial_count / self.serial_seconds,
            "latency_p50_ms": percentile(self.latencies, 50) * ms,
            "latency_p99_ms": percentile(self.latencies, 99) * ms,
            "command_p50_ms": percentile(self.exits, 50) * ms,
        }


async def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    shipped = install_shipped(work)
    sink = Sink()
    await sink.start()
    postfix = Postfix(free_port(), relayhost=f"[127.0.0.1]:{sink.port}")
    postfix.start()
    loadavg = load()
    try:
        state_dir = tempfile.mkdtemp(dir=work)
        async with spoolerd(state_dir, spoolerd_config(state_dir, sink.port)) as daemon:
            env = {**os.environ, "SPOOLERD_SOCKET": str(daemon.socket)}
            ours = Side("spoolerd", [str(shipped), "-i", "-f", SENDER, RCPT], env)
            theirs = Side("postfix", ["sendmail", "-C", str(postfix.root), "-i", "-f", SENDER, RCPT], env)
            await ours.latency(sink, 0)  # each side's first message (a connection opened, a process
            await theirs.latency(sink, 0)  # started) is not counted
            ours.latencies.clear(), ours.exits.clear(), theirs.latencies.clear(), theirs.exits.clear()
            per_round = max(1, args.submits // args.rounds)
            for r in range(args.rounds):
                for side in (ours, theirs) if r % 2 == 0 else (theirs, ours):
                    await side.serial(sink, r * per_round, per_round)
            for i in range(args.latency):
                for side in (ours, theirs) if i % 2 == 0 else (theirs, ours):
                    await side.latency(sink, i)
            peak = daemon.peak_rss_mb()
    finally:
        postfix.stop()
        await sink.stop()
    a, b = ours.result(), theirs.result()
    return {
        "spoolerd": a | {"peak_rss_mb": peak},
        "postfix": b,
        "submits_ratio": a["submits_per_second"] / b["submits_per_second"],
        "latency_p50_ratio": a["latency_p50_ms"] / b["latency_p50_ms"],
        "load_before": loadavg,
        "load_after": load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submits", type=int, default=300, help="serial submits per side")
    parser.add_argument("--latency", type=int, default=100, help="single messages timed per side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke test: 6 serial submits, 4 timed")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "sendmail.json"))
    args = parser.parse_args()
    if args.quick:
        args.submits, args.latency, args.rounds = 6, 4, 2
    reason = available()
    if reason:
        sys.exit(f"bench/sendmail.py: {reason}")
    with tempfile.TemporaryDirectory() as work:
        result = asyncio.run(bench(args, Path(work)))
    ours, theirs = result["spoolerd"], result["postfix"]
    print(f"{'':<22}{'spoolerd-sendmail':>18}{'Postfix sendmail':>18}{'ratio':>7}")
    print(f"{'serial submits/s':<22}{ours['submits_per_second']:>18,.1f}"
          f"{theirs['submits_per_second']:>18,.1f}{result['submits_ratio']:>7.2f}")  # fmt: skip
    print(f"{'to the sink p50 ms':<22}{ours['latency_p50_ms']:>18,.1f}"
          f"{theirs['latency_p50_ms']:>18,.1f}{result['latency_p50_ratio']:>7.2f}")  # fmt: skip
    print(f"{'to the sink p99 ms':<22}{ours['latency_p99_ms']:>18,.1f}{theirs['latency_p99_ms']:>18,.1f}")
    print(f"{'command p50 ms':<22}{ours['command_p50_ms']:>18,.1f}{theirs['command_p50_ms']:>18,.1f}")
    print(f"load {'/'.join(map(str, result['load_before']))} -> {'/'.join(map(str, result['load_after']))}"
          f"; spoolerd daemon peak RSS {ours['peak_rss_mb']:.0f} MB")  # fmt: skip
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"(json: {out})")


if __name__ == "__main__":
    main()

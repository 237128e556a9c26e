"""A dead relay with a large queue (#17): what the daemon spends while every queued message waits for a
destination that does not answer. N messages (due now, written straight in SQL) to one destination of a
transport whose every send finds the connection down (the test plugins' scripted transport); the daemon
runs with ``destination_hold`` H. It prints the CPU time (user + sys, every thread of this process) of
the first pass over the queue (every message tried once: H must outlast it), then of a window of W
seconds with the holds that end in it, and the delivery attempts (messages locked) in each: a held
destination should cost no attempt per queued message once its hold is known.

    python -m bench.dead_relay [--messages 100000] [--hold 300] [--window 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import structlog

from bench.harness import cpu_seconds
from spoolerd.config import parse_config
from spoolerd.daemon import build, running
from spoolerd.message import Draft, FolderRole, NewRecipient
from spoolerd.plugins import PluginRegistry
from spoolerd.store import StoreContext
from stores.sqlite.testing import SqliteBackend

BODY = b"From: bench@localhost\r\nSubject: bench\r\n\r\n" + b"x" * 4000 + b"\r\n"


async def prefill(options: dict[str, Any], location: Path, messages: int) -> None:
    store = PluginRegistry().open_store("sqlite", options, StoreContext("q", location))
    await store.start()
    try:
        outbox = await store.folder(FolderRole.OUTBOX)
        await store.submit_new(outbox.id, Draft(BODY, [NewRecipient("r@dead.test")]))
        await SqliteBackend().fill_deferred(options, messages - 1, time.time() - 1)  # due now
    finally:
        await store.stop()


async def run(messages: int, hold: float, window: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        location = Path(tmp)
        options = {"path": str(location / "q.db")}
        await prefill(options, location, messages)
        config = parse_config(
            {
                "spooler": {"state_dir": tmp, "default_store": "q", "retry": {"destination_hold": hold}},
                "stores": {"q": {"provider": "sqlite", **options, "addresses": ["@localhost"]}},
                "transports": {"relay": {"provider": "test-scripted", "connection_down": True}},
                "control": {"enabled": False},
            }
        )
        daemon = build(config, PluginRegistry())
        attempts = 0
        first_pass = anyio.Event()  # every message tried once (the hold outlasts the pass)

        def observe(store_name: str, message_id: str, seconds: float) -> None:
            nonlocal attempts
            attempts += 1
            if attempts >= messages:
                first_pass.set()

        daemon.spooler.attempt_observers.append(observe)
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        async with running(daemon):
            with anyio.fail_after(3600):
                await first_pass.wait()
            first = {"cpu_seconds": cpu_seconds() - cpu0, "seconds": time.perf_counter() - t0}
            first["attempts"], attempts = attempts, 0
            cache = daemon.spooler.dispatcher.destinations
            failures0, cpu1 = sum(cache.consecutive_failures().values()), cpu_seconds()
            await anyio.sleep(window)  # the holds that end in the window: a measurement, not a wait
            steady = {"cpu_seconds": cpu_seconds() - cpu1, "seconds": window, "attempts": attempts}
            steady["relay_tries"] = sum(cache.consecutive_failures().values()) - failures0
        return {"messages": messages, "destination_hold": hold, "first_pass": first, "window": steady}


def summary(leg: str, row: dict[str, Any]) -> str:
    share = 100 * row["cpu_seconds"] / max(row["seconds"], 1e-9)
    tries = row.get("relay_tries", "-")
    return (
        f"{leg:<10} {row['seconds']:7.1f} s  CPU {row['cpu_seconds']:7.2f} s ({share:5.1f}% of a core)"
        f"  attempts {row['attempts']:,}  relay tries {tries}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--hold", type=float, default=300.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "dead_relay.json"))
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    result = asyncio.run(run(args.messages, args.hold, args.window))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(summary(leg, result[leg]) for leg in ("first_pass", "window")))


if __name__ == "__main__":
    main()

"""Queue size does not cost (#17): submits/s and deliveries/s with 1k and with 100k deferred messages
queued, and the ratio. The deferred messages are written straight in SQL (the store backends'
``fill_deferred``), due a day later; then a daemon on the store takes M new messages (``submit_new``,
16 at a time) and delivers them to a no-op transport. Besides wall time, the process's CPU time (user +
sys, every thread) per message: the machine may be shared, CPU time moves less with its load.

    python -m bench.queue_size [--sizes 1000 100000] [--messages 2000] [--dialects sqlite postgres]
                               [--dsn ADMIN_DSN] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
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
from stores.postgres.testing import PostgresBackend, create_database, drop_database
from stores.sqlite.testing import SqliteBackend

BODY = b"From: bench@localhost\r\nSubject: bench\r\n\r\n" + b"x" * 4000 + b"\r\n"
DATABASE = f"spoolerd_bench_queue_{os.getpid()}"


async def prefill(backend: Any, options: dict[str, Any], location: Path, deferred: int) -> float:
    """``deferred`` messages due a day from now; the seconds the fill took."""
    began = time.perf_counter()
    provider_options = {k: v for k, v in options.items() if k != "provider"}
    store = PluginRegistry().open_store(backend.provider, provider_options, StoreContext("q", location))
    await store.start()
    try:
        outbox = await store.folder(FolderRole.OUTBOX)
        template = await store.submit_new(outbox.id, Draft(BODY, [NewRecipient("t@remote.test")]))
        await backend.fill_deferred(provider_options, deferred, time.time() + 86400)
        await store.abort_submit(template)  # only the copies wait
    finally:
        await store.stop()
    return time.perf_counter() - began


async def measure(backend: Any, options: dict[str, Any], state: Path, messages: int) -> dict[str, float]:
    config = parse_config(
        {
            "spooler": {"state_dir": str(state), "default_store": "q"},
            "stores": {"q": {"provider": backend.provider, **options, "addresses": ["@localhost"]}},
            "transports": {"null": {"provider": "test-scripted", "concurrency": 64}},
            "control": {"enabled": False},
        }
    )
    daemon = build(config, PluginRegistry())
    store = daemon.stores["q"]
    delivered = anyio.Event()
    seen = 0

    def observe(store_name: str, message_id: str, seconds: float) -> None:
        nonlocal seen
        seen += 1
        if seen >= messages:
            delivered.set()

    async with running(daemon):
        daemon.spooler.attempt_observers.append(observe)
        outbox = await store.folder(FolderRole.OUTBOX)
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        draft = Draft(BODY, [NewRecipient("r@remote.test")], sender="bench@localhost")
        for start in range(0, messages, 16):
            batch = min(16, messages - start)
            await asyncio.gather(*(store.submit_new(outbox.id, draft) for _ in range(batch)))
        submitted = time.perf_counter() - t0
        with anyio.fail_after(600):
            await delivered.wait()
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    return {
        "submits_per_second": messages / submitted,
        "deliveries_per_second": messages / elapsed,
        "cpu_ms_per_message": cpu * 1000 / messages,
    }


async def run(dialect: str, sizes: list[int], messages: int, admin_dsn: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            location = Path(tmp)
            backend: Any
            if dialect == "sqlite":
                backend = SqliteBackend()
            else:
                backend = PostgresBackend(await create_database(admin_dsn, DATABASE))
            options = await backend.create(location)
            try:
                fill = await prefill(backend, options, location, size)
                result = await measure(backend, options, location, messages)
            finally:
                if dialect == "postgres":
                    await drop_database(admin_dsn, DATABASE)
            rows.append({"dialect": dialect, "deferred": size, "fill_seconds": fill, **result})
            print(
                f"{dialect:<9} {size:>7,} deferred: {result['submits_per_second']:8.1f} submits/s"
                f" {result['deliveries_per_second']:8.1f} deliveries/s"
                f" {result['cpu_ms_per_message']:6.2f} CPU ms/message (filled in {fill:.1f} s)",
                flush=True,
            )
    small, large = rows[0], rows[-1]
    for key in ("submits_per_second", "deliveries_per_second"):
        ratio = large[key] / small[key]
        print(f"{dialect:<9} {key} at {large['deferred']:,} / at {small['deferred']:,}: {ratio:.2f}")
    cpu_ratio = large["cpu_ms_per_message"] / small["cpu_ms_per_message"]
    print(f"{dialect:<9} CPU per message at {large['deferred']:,} / {small['deferred']:,}: {cpu_ratio:.2f}")
    return rows


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for dialect in args.dialects:
        rows += await run(dialect, args.sizes, args.messages, args.dsn)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--messages", type=int, default=2000)
    dialects = ["sqlite", "postgres"]
    parser.add_argument("--dialects", nargs="+", choices=dialects, default=dialects)
    parser.add_argument(
        "--dsn",
        default=os.environ.get("SPOOLERD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "queue_size.json"))
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # no line each
    rows = asyncio.run(main_async(args))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

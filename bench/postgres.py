"""The PostgreSQL store against the SQLite one: N messages of 4 KB (bench/harness.py's: CRLF lines of
76 characters, every header a submission needs; a single 4,000-character line, as this bench had, sent
every message through the smtp transport's long-line re-encoding, 29% of the daemon's CPU) queued, then
delivered by real daemon processes through the smtp transport to one smtp-sink. Four legs: one daemon
on SQLite, one daemon on PostgreSQL, two daemons (each with its own state directory) on one PostgreSQL
store, and one daemon with a delivery worker (``workers = 2``) on PostgreSQL (its daemon CPU counts the
daemon's process only). Each leg is timed from the daemons' start until smtp-sink has every message;
for PostgreSQL, the committed transactions per message (pg_stat_database's xact_commit, every
connection to the bench database: each statement outside a transaction counts as one) are the store's
round trips that change state. CPU per message: the daemons' own (user + system, every thread), the
database server's and the whole machine's (/proc/stat: smtp-sink and anything else running included),
with the load average before and after.

    python -m bench.postgres [--messages 10000] [--dsn ADMIN_DSN] [--json FILE]

ADMIN_DSN may create databases (default: SPOOLERD_TEST_POSTGRES, else postgres on 127.0.0.1:5432).
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

import asyncpg

from bench.harness import content, machine_cpu, process_cpu
from bench.relay import Sink
from spoolerd.message import Draft, FolderRole, NewRecipient
from spoolerd.plugins import PluginRegistry
from spoolerd.store import StoreContext
from stores.postgres.testing import create_database, drop_database


def daemon_config(state: Path, store: dict[str, Any], port: int, workers: int = 1) -> str:
    options = "\n".join(f"{k} = {json.dumps(v)}" for k, v in store.items())
    return (
        f'[spooler]\nstate_dir = "{state}"\npreprocessors = []\nmax_in_flight = 256\ndefault_store = "q"\n'
        f"workers = {workers}\n"
        '[control]\nenabled = false\n[log]\nlevel = "warning"\n'
        f"[stores.q]\n{options}\n"
        f'[transports.relay]\nprovider = "smtp"\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n'
        'helo = "bench.test"\npool_size = 16\ndestination_concurrency = 16\nmessages_per_connection = 1000\n'
        "concurrency = 16\n"
    )


async def prefill(store_options: dict[str, Any], location: Path, messages: int) -> None:
    options = {k: v for k, v in store_options.items() if k != "provider"}
    store = PluginRegistry().open_store(store_options["provider"], options, StoreContext("q", location))
    await store.start()
    try:
        outbox = await store.folder(FolderRole.OUTBOX)
        for start in range(0, messages, 250):
            batch = range(start, min(messages, start + 250))
            ids = await asyncio.gather(
                *(
                    store.create_message(outbox.id, Draft(content(i), [NewRecipient(f"r{i}@remote.test")]))
                    for i in batch
                )
            )
            await asyncio.gather(*(store.submit(mid) for mid in ids))
    finally:
        await store.stop()


async def commits(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return int(
            await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        )
    finally:
        await conn.close()


def server_cpu() -> float:
    """Seconds of CPU the PostgreSQL server's processes now running have used (a backend that has
    ended is not counted: read while the daemons' connections are open)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().strip() != "postgres":
                        continue
                total += process_cpu(int(entry))
            except OSError:  # ended meanwhile
                continue
    return total


async def leg(
    name: str, store: dict[str, Any], daemons: int, messages: int, dsn: str | None, *, workers: int = 1
) -> dict[str, Any]:
    sink = Sink()
    await sink.start()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if store["provider"] == "sqlite":  # one file every daemon and the prefill open, whatever state_dir
            store = {**store, "path": str(root / "queue.db")}
        await prefill(store, root, messages)
        before = await commits(dsn) if dsn else 0
        load_before = os.getloadavg()[0]
        cpu_before, server_before = machine_cpu(), server_cpu()
        procs = []
        started = time.perf_counter()
        for n in range(daemons):
            cfg = root / f"d{n}.toml"
            cfg.write_text(daemon_config(root / f"state{n}", store, sink.port, workers))
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "spoolerd.cli",
                    "run",
                    "--config",
                    str(cfg),
                    stderr=subprocess.DEVNULL,
                )
            )
        try:
            await sink.wait_for(messages)
            elapsed = time.perf_counter() - started
            daemon_cpu = sum(process_cpu(p.pid) for p in procs)
            cpu = machine_cpu() - cpu_before
            server = server_cpu() - server_before
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                await proc.wait()
            await sink.stop()
        after = await commits(dsn) if dsn else 0
    result = {"leg": name, "messages": messages, "seconds": round(elapsed, 2)}
    result["per_second"] = round(messages / elapsed, 1)
    result["daemon_cpu_ms_per_message"] = round(daemon_cpu * 1000 / messages, 3)
    if dsn:
        result["server_cpu_ms_per_message"] = round(server * 1000 / messages, 3)
    result["machine_cpu_ms_per_message"] = round(cpu * 1000 / messages, 3)
    result["load"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    if dsn:  # the stats collector lags a little; read after the daemons have stopped
        result["commits_per_message"] = round((after - before) / messages, 2)
    return result


async def main(messages: int, admin_dsn: str) -> list[dict[str, Any]]:
    name = f"spoolerd_bench_{os.getpid()}"
    dsn = await create_database(admin_dsn, name)
    try:
        results = [await leg("1 daemon, SQLite", {"provider": "sqlite"}, 1, messages, None)]
        for daemons, schema in ((1, "one"), (2, "two")):
            store = {"provider": "postgres", "dsn": dsn, "schema_name": schema}
            label = f"{daemons} daemon{'s' if daemons > 1 else ''}, PostgreSQL"
            results.append(await leg(label, store, daemons, messages, dsn))
        # the same second process as a delivery worker of one daemon ([spooler] workers = 2)
        store = {"provider": "postgres", "dsn": dsn, "schema_name": "workers"}
        results.append(await leg("1 daemon, workers = 2, PostgreSQL", store, 1, messages, dsn, workers=2))
    finally:
        await drop_database(admin_dsn, name)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument(
        "--dsn",
        default=os.environ.get("SPOOLERD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = asyncio.run(main(args.messages, args.dsn))
    for row in rows:
        print(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))

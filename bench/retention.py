"""What purging Sent Items gives back: database size before and after deleting sent copies.

    python bench/retention.py [--copies 1000] [--size 4096] [--json FILE]

Fills a fresh SQLite store with ``--copies`` messages with ``--size`` bytes of body that went the
spooler's way (created, submitted, locked, finished into Sent Items, each step durable), then purges all
but the youngest 100 as the retention timer does, and reports the database file and its WAL before
(checkpointed) and after the purge and how long the purge took. It does the same with the file turned
into one made before spoolerd set incremental auto-vacuum, which the store rebuilds once when it opens
it (the open time shows that cost). Prints a table and writes JSON (default bench/results/retention.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from spoolerd.message import Draft, FolderRole, NewRecipient, RecipientState, RecipientUpdate
from spoolerd.plugins import PluginRegistry
from spoolerd.store import MessageStore, StoreContext


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def sizes(path: Path) -> dict[str, int]:
    wal = Path(f"{path}-wal")
    return {"db_bytes": path.stat().st_size, "wal_bytes": wal.stat().st_size if wal.exists() else 0}


def checkpointed(path: Path) -> dict[str, int]:
    """Sizes once the WAL is written back, so that the database file holds everything."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return sizes(path)


def without_auto_vacuum(path: Path) -> None:
    """Turn the file into one as spoolerd made them before it set auto-vacuum at creation."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA auto_vacuum=NONE")
    conn.execute("VACUUM")
    conn.close()


def open_store(directory: Path, path: Path, clock: Clock) -> MessageStore:
    return PluginRegistry().open_store("sqlite", {"path": str(path)}, StoreContext("bench", directory, clock))


async def sent_copy(store: MessageStore, content: bytes, outbox: str, sent: str) -> None:
    draft = Draft(content, [NewRecipient("r@example.org")], sentmail_folder=sent)
    mid = await store.create_message(outbox, draft)
    await store.submit(mid)
    await store.lock(mid, "bench", 60)
    await store.finish(mid, "bench", outcomes=[RecipientUpdate(0, RecipientState.DELIVERED)])


async def measure(directory: Path, copies: int, size: int, legacy: bool) -> dict[str, Any]:
    clock = Clock()
    path = directory / ("legacy.db" if legacy else "spool.db")
    store = open_store(directory, path, clock)
    await store.start()
    outbox, sent = (await store.folder(FolderRole.OUTBOX)).id, (await store.folder(FolderRole.SENT)).id
    content = b"From: a@example.org\r\nSubject: sent\r\n\r\n" + os.urandom(size).hex().encode()[:size]
    for start in range(0, copies, 100):  # 100 at a time, as a busy spooler finishes them
        clock.now += 1
        await asyncio.gather(*(sent_copy(store, content, outbox, sent) for _ in range(start, start + 100)))
    await store.stop()
    if legacy:
        without_auto_vacuum(path)
    filled = checkpointed(path)
    store = open_store(directory, path, clock)
    started = time.perf_counter()
    await store.start()  # a legacy file is rebuilt here, once
    opened = time.perf_counter() - started
    try:
        started = time.perf_counter()
        purged = await store.purge(sent, clock.now)  # all but the last 100, filed at clock.now
        seconds = time.perf_counter() - started
        left = len(await store.list_messages(sent))
    finally:
        await store.stop()
    return {"copies": copies, "purged": purged, "left": left, "open_seconds": round(opened, 3),
            "purge_seconds": round(seconds, 3), "before": filled, "after": sizes(path)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=1000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "retention.json"))
    args = parser.parse_args()
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, legacy in (("new store", False), ("legacy store", True)):
            result[name] = asyncio.run(measure(Path(tmp), args.copies, args.size, legacy))
    for name, r in result.items():
        print(f"{name}: {r['copies']} copies, {r['purged']} purged in {r['purge_seconds']} s,"
              f" {r['left']} left; opened in {r['open_seconds']} s")  # fmt: skip
        for key in ("before", "after"):
            print(f"  {key:<7} database {r[key]['db_bytes']:>12,} B   WAL {r[key]['wal_bytes']:>12,} B")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""A real daemon process, delivering to a slow test peer, killed with SIGKILL again and again.

Afterwards every recipient is delivered, nothing is lost, and no recipient that the store had recorded
DELIVERED at a kill was sent again after it: the only duplicates are deliveries that were in flight (sent,
not yet recorded) when the process died.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import sys
import time
from pathlib import Path

import anyio
import pytest

from spoolerd.events import QueueChanged, Subscription
from spoolerd.message import Draft, FolderRole, NewRecipient
from spoolerd.store import MessageStore, StoreContext
from stores.sqlite import SqliteSettings, SqliteStore

MESSAGES = 2000
KILLS = 4
MAX_IN_FLIGHT = 16
DOMAINS = 8
LEASE = 300  # the default: a restarted daemon must not wait for its previous life's leases to expire


def config(state: Path, log_file: Path) -> str:
    return f"""
[spooler]
state_dir = "{state}"
max_in_flight = {MAX_IN_FLIGHT}
lease = {LEASE}
preprocessors = []

[log]
level = "warning"

[stores.local]
provider = "sqlite"

[transports.peer]
provider = "test-scripted"
delay = 0.01
log_file = "{log_file}"
"""


def expected_pairs(ids: list[str]) -> set[tuple[str, str]]:
    pairs = set()
    for n, mid in enumerate(ids):
        pairs.add((mid, f"r{n}@d{n % DOMAINS}.test"))
        if n % 3 == 0:
            pairs.add((mid, f"extra{n}@d{(n + 1) % DOMAINS}.test"))
    return pairs


async def populate(store: MessageStore) -> list[str]:
    outbox = await store.folder(FolderRole.OUTBOX)

    async def one(n: int) -> str:
        rcpts = [NewRecipient(f"r{n}@d{n % DOMAINS}.test")]
        if n % 3 == 0:
            rcpts.append(NewRecipient(f"extra{n}@d{(n + 1) % DOMAINS}.test"))
        mid = await store.create_message(
            outbox.id, Draft(f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(), rcpts)
        )
        await store.submit(mid)
        return mid

    return list(await asyncio.gather(*(one(n) for n in range(MESSAGES))))


def delivered_in_store(db: Path) -> set[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT message_id, address FROM recipients WHERE state = 'delivered'").fetchall()
    finally:
        conn.close()
    return {(str(mid), address) for mid, address in rows}


def log_lines(log_file: Path) -> list[tuple[str, str]]:
    if not log_file.exists():
        return []
    out = []
    for line in log_file.read_text().splitlines():
        mid, address = line.split()
        out.append((mid, address))
    return out


async def start_daemon(cfg: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spoolerd.cli", "run", "--config", str(cfg)
    )


async def kill_rounds(
    cfg: Path, db: Path, log_file: Path, events: Subscription, rng: random.Random
) -> list[tuple[set[tuple[str, str]], int]]:
    """Start the daemon and SIGKILL it after a random amount of progress, KILLS times; return, for each
    kill, what the store had recorded DELIVERED and how many deliveries the peer had seen."""
    kills = []
    for _ in range(KILLS):
        proc = await start_daemon(cfg)
        commits = rng.randint(3, 60)  # its commits, seen here as external changes
        with anyio.fail_after(60):
            while commits:
                event = await events.receive()
                if isinstance(event, QueueChanged) and event.reason == "external":
                    commits -= 1
        proc.kill()
        assert await proc.wait() == -signal.SIGKILL
        kills.append((delivered_in_store(db), len(log_lines(log_file))))
    return kills


async def run_to_the_end(cfg: Path, db: Path, watcher: MessageStore, events: Subscription) -> float:
    """Start the daemon once more and wait for the queue to drain; return how long that took."""
    started = time.monotonic()
    proc = await start_daemon(cfg)
    history: list[object] = []
    try:
        with anyio.fail_after(LEASE / 3):
            while (due := await watcher.next_due()) is not None:
                history.append(("next_due", due, time.time()))
                history.append(await events.receive())
    except TimeoutError:
        conn = sqlite3.connect(db)
        stuck = conn.execute(
            "SELECT id, lock_owner, lock_expiry, due_at FROM messages WHERE queued=1 LIMIT 5"
        )
        rows = stuck.fetchall()
        conn.close()
        proc.kill()
        raise AssertionError(f"queue not drained: {rows}; last events {history[-6:]}") from None
    drained = time.monotonic() - started
    proc.send_signal(signal.SIGTERM)
    assert await proc.wait() == 0
    return drained


@pytest.mark.timeout(240)
async def test_sigkill_during_delivery_loses_nothing_and_resends_only_in_flight(tmp_path: Path) -> None:
    state, log_file = tmp_path / "state", tmp_path / "deliveries.log"
    cfg = tmp_path / "spoolerd.toml"
    cfg.write_text(config(state, log_file))
    db = state / "spool.db"
    watcher = SqliteStore(SqliteSettings(path=db), StoreContext("local", state))
    await watcher.start()
    try:
        ids = await populate(watcher)
        expected = expected_pairs(ids)
        seed = random.randrange(2**32)
        async with watcher.subscribe() as events:
            kills = await kill_rounds(cfg, db, log_file, events, random.Random(seed))
            drained = await run_to_the_end(cfg, db, watcher, events)
        lines = log_lines(log_file)
        assert set(lines) == expected, f"lost deliveries (seed {seed})"
        assert delivered_in_store(db) == expected
        for k, (recorded, offset) in enumerate(kills):
            resent = [pair for pair in lines[offset:] if pair in recorded]
            assert resent == [], f"kill {k}: recorded DELIVERED yet sent again (seed {seed})"
        duplicates = len(lines) - len(set(lines))
        # at most what was in flight at each kill (messages in flight times their recipients)
        assert duplicates <= KILLS * MAX_IN_FLIGHT * 2, duplicates
        progress = [offset for _recorded, offset in kills]
        print(
            f"\ncrash test: {MESSAGES} messages, {len(expected)} recipients,"
            f" kills after {progress} deliveries,"
            f" duplicates {duplicates}, drained {drained:.1f} s after the last restart (seed {seed})"
        )
    finally:
        await watcher.stop()

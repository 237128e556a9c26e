"""Two daemon processes on one PostgreSQL store, killed with SIGKILL twenty times between them.

Each daemon has its own state directory and both deliver to one test peer that writes a line per
delivered recipient (fsync'd). A killed daemon is started again at once, and takes back what its previous
life held (``reclaim``), except at the last kill: that daemon stays dead and the survivor must take its
messages when their leases expire. Afterwards every (message, recipient) was delivered, none that the store
had recorded DELIVERED at a kill was sent again, and the only duplicates are deliveries in flight at a kill.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from spoolerd.events import QueueChanged, Subscription
from spoolerd.message import Draft, FolderRole, NewRecipient
from spoolerd.store import MessageStore
from tests.engine.test_crash import log_lines
from tests.postgres.test_daemons import client_store, new_root, shared

__all__ = ["client_store", "shared"]

DAEMON_PROCESSES = True  # one loop is enough (tests/postgres/conftest.py)

MESSAGES = 2500  # of two recipients: 5,000 deliveries
KILLS = 20
MAX_IN_FLIGHT = 16
LEASE = 8  # short, so the survivor's takeover at expiry is quick; renewed every third


def config(root: Path, store: dict[str, Any], log_file: Path) -> Path:
    cfg = root / "spoolerd.toml"
    options = "\n".join(f"{k} = {v!r}" if isinstance(v, int) else f'{k} = "{v}"' for k, v in store.items())
    cfg.write_text(
        f'[spooler]\nstate_dir = "{root / "state"}"\nmax_in_flight = {MAX_IN_FLIGHT}\nlease = {LEASE}\n'
        'preprocessors = []\ndefault_store = "shared"\n'
        f'[control]\nsocket = "{root / "control.sock"}"\n[log]\nlevel = "warning"\n'
        f'[stores.shared]\nprovider = "postgres"\n{options}\n'
        f'[transports.peer]\nprovider = "test-scripted"\ndelay = 0.005\nlog_file = "{log_file}"\n'
    )
    return cfg


async def populate(store: MessageStore) -> set[tuple[str, str]]:
    outbox = await store.folder(FolderRole.OUTBOX)
    expected: set[tuple[str, str]] = set()

    async def some(first: int) -> None:
        for n in range(first, MESSAGES, 4):
            rcpts = [f"a{n}@d{n % 8}.test", f"b{n}@d{(n + 1) % 8}.test"]
            draft = Draft(f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(), [NewRecipient(r) for r in rcpts])
            mid = await store.submit_new(outbox.id, draft)
            expected.update((mid, r) for r in rcpts)

    await asyncio.gather(*(some(k) for k in range(4)))  # the pool's four connections
    return expected


async def delivered_in_store(options: dict[str, Any]) -> set[tuple[str, str]]:
    conn = await asyncpg.connect(options["dsn"], timeout=10)
    try:
        rows = await conn.fetch(
            f'SELECT message_id, address FROM "{options["schema_name"]}".recipients WHERE state = $1',
            "delivered",
        )
    finally:
        await conn.close()
    return {(str(r["message_id"]), r["address"]) for r in rows}


async def start(cfg: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spoolerd.cli", "run", "--config", str(cfg)
    )


async def progress(events: Subscription[Any], commits: int) -> None:
    """Wait until the daemons have announced ``commits`` more changes (NOTIFY: a finish, or external; a
    burst of finishes may come as one, and a batch of them does: one notice for up to a few dozen)."""
    with anyio.fail_after(60):
        while commits:
            event = await events.receive()
            if isinstance(event, QueueChanged) and event.reason in ("external", "finish"):
                commits -= 1


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_twenty_kills_over_two_daemons_lose_nothing(
    shared: dict[str, Any], client_store: MessageStore, tmp_path: Path
) -> None:
    log_file = tmp_path / "deliveries.log"
    cfgs = [config(new_root(), shared, log_file) for _ in range(2)]
    expected = await populate(client_store)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    procs = [await start(cfg) for cfg in cfgs]
    kills: list[tuple[set[tuple[str, str]], int]] = []  # what the store had DELIVERED, lines the peer had
    try:
        async with client_store.subscribe() as events:
            for k in range(KILLS):
                await progress(events, rng.randint(1, 8))
                victim = rng.randrange(2)
                procs[victim].kill()
                assert await procs[victim].wait() == -signal.SIGKILL
                kills.append((await delivered_in_store(shared), len(log_lines(log_file))))
                if k < KILLS - 1:
                    procs[victim] = await start(cfgs[victim])
            # the last victim stays dead: the survivor finishes, its leases included once they expire
            dead = victim
            began = time.monotonic()
            with anyio.fail_after(LEASE * 20):
                while [e async for e in client_store.outgoing_queue()]:
                    await events.receive()
                    events.pending()
            drained = time.monotonic() - began
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                assert await proc.wait() == 0
    lines = log_lines(log_file)
    assert set(lines) == expected, f"{len(expected - set(lines))} lost (seed {seed})"
    assert await delivered_in_store(shared) == expected
    for k, (recorded, offset) in enumerate(kills):
        resent = [pair for pair in lines[offset:] if pair in recorded]
        assert resent == [], f"kill {k}: recorded DELIVERED yet sent again (seed {seed})"
    duplicates = len(lines) - len(set(lines))
    assert duplicates <= KILLS * MAX_IN_FLIGHT * 2, duplicates
    print(
        f"\npostgres torture: {len(expected)} deliveries over two daemons, {KILLS} kills,"
        f" duplicates {duplicates}, drained {drained:.1f} s after daemon {dead} died for good (seed {seed})"
    )

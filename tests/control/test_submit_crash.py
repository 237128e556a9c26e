"""A real daemon killed with SIGKILL again and again while clients submit through its control socket.

A submit is one transaction: afterwards no message sits in the Outbox unqueued (a draft nobody will ever
send), and every submit that was answered ok is queued or was delivered (filed in Sent Items).
"""

from __future__ import annotations

import base64
import random
import signal
import time
from dataclasses import dataclass, field

import anyio
import pytest

from spoolerd.message import FolderRole
from spoolerd.store import StoreContext
from stores.sqlite import SqliteSettings, SqliteStore
from tests.control.conftest import Client, Daemon, short_root

KILLS = 15
CLIENTS = 8


@dataclass
class Answers:
    """The ids of submits answered ok, and an event for when there are ``goal`` of them."""

    ids: list[str] = field(default_factory=list)
    goal: int = 0
    reached: anyio.Event = field(default_factory=anyio.Event)

    def add(self, message_id: str) -> None:
        self.ids.append(message_id)
        if len(self.ids) >= self.goal:
            self.reached.set()


async def submitter(daemon: Daemon, n: int, acknowledged: Answers) -> None:
    """Submit until the daemon dies under us; every id answered ok goes into ``acknowledged``."""
    try:
        client = Client(await anyio.connect_unix(daemon.socket))
    except OSError:  # killed before this client got in
        return
    async with client.stream:
        for i in range(1_000_000):
            message = f"Subject: {n}/{i}\r\n\r\nbody\r\n".encode()
            try:
                answer = await client.call(
                    "submit", message=base64.b64encode(message).decode(), recipients=[f"c{n}@remote.test"]
                )
            except (OSError, anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the kill: this submit was never answered
            assert answer["ok"], answer
            acknowledged.add(answer["result"]["id"])


async def one_life(daemon: Daemon, rng: random.Random, acknowledged: Answers) -> None:
    """Start the daemon, let CLIENTS clients submit, SIGKILL it once a random number more are answered
    (the other clients' submits are then at random points of their way into the store)."""
    await daemon.start()
    assert daemon.proc is not None
    acknowledged.goal = len(acknowledged.ids) + rng.randint(1, 40)
    acknowledged.reached = anyio.Event()
    async with anyio.create_task_group() as tg:
        for n in range(CLIENTS):
            tg.start_soon(submitter, daemon, n, acknowledged)
        with anyio.fail_after(30):
            await acknowledged.reached.wait()
        daemon.proc.send_signal(signal.SIGKILL)
        assert await daemon.proc.wait() == -signal.SIGKILL


@pytest.mark.timeout(120)
async def test_sigkill_while_clients_submit_leaves_no_unsent_draft() -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    daemon = Daemon(short_root())
    acknowledged = Answers()
    started = time.monotonic()
    for _ in range(KILLS):
        await one_life(daemon, rng, acknowledged)
    took = time.monotonic() - started

    store = SqliteStore(SqliteSettings(), StoreContext("local", daemon.root / "state"))
    await store.start()
    try:
        queued = {e.id async for e in store.outgoing_queue()}
        outbox = await store.folder(FolderRole.OUTBOX)
        sent = await store.folder(FolderRole.SENT)
        drafts = [m.id for m in await store.list_messages(outbox.id) if m.id not in queued]
        filed = {m.id for m in await store.list_messages(sent.id)}
    finally:
        await store.stop()
    lost = [mid for mid in acknowledged.ids if mid not in queued and mid not in filed]
    print(f"{KILLS} kills in {took:.1f} s: {len(acknowledged.ids)} acknowledged, {len(drafts)} drafts left")
    assert drafts == [], f"{len(drafts)} unqueued drafts left in the Outbox after {KILLS} kills (seed {seed})"
    assert lost == [], f"{len(lost)} acknowledged submits neither queued nor sent (seed {seed})"
    assert len(acknowledged.ids) >= KILLS

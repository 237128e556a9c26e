"""Real daemons on the PostgreSQL store, relaying to a real SMTP server (aiosmtpd): one delivers end to
end; two, each with its own state directory, share one store and deliver every (message, recipient) of a
queue exactly once. The test submits through its own connection to the store, as a client on another
host would: the daemons hear of it only through NOTIFY."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from spoolerd.events import QueueChanged
from spoolerd.message import Draft, FolderRole, NewRecipient
from spoolerd.plugins import PluginRegistry
from spoolerd.store import MessageStore, StoreContext
from spoolerd.views import show_queue
from stores.postgres.testing import PostgresBackend
from tests.control.conftest import Daemon
from tests.smtp.conftest import ServerFactory, smtp_server

__all__ = ["smtp_server"]

DAEMON_PROCESSES = True  # one loop is enough (tests/postgres/conftest.py)


class PostgresDaemon(Daemon):
    """A daemon whose only queueing store is the shared PostgreSQL one, relaying to 127.0.0.1:port."""

    def __init__(self, root: Path, store: dict[str, Any], port: int) -> None:
        super().__init__(root)
        self.store = store
        self.port = port

    def write_config(self) -> Path:
        cfg = self.root / "spoolerd.toml"
        store = "\n".join(f"{k} = {json.dumps(v)}" for k, v in self.store.items())
        cfg.write_text(
            f'[spooler]\nstate_dir = "{self.root / "state"}"\nmax_in_flight = 16\npreprocessors = []\n'
            'default_store = "shared"\n'
            f'[control]\nsocket = "{self.socket}"\n[log]\nformat = "json"\nlevel = "info"\n'
            f'[stores.shared]\nprovider = "postgres"\n{store}\n'
            f'[transports.relay]\nprovider = "smtp"\nhost = "127.0.0.1"\nport = {self.port}\n'
            'tls = "none"\nhelo = "spool.test"\n'
        )
        return cfg


@pytest.fixture
async def shared(postgres_dsn: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """The options of a fresh PostgreSQL store (a schema of its own), dropped after the test."""
    backend = PostgresBackend(postgres_dsn)
    options = await backend.create(tmp_path)
    yield options
    await backend.drop(options)


@pytest.fixture
async def client_store(shared: dict[str, Any], tmp_path: Path) -> AsyncIterator[MessageStore]:
    store = PluginRegistry().open_store("postgres", shared, StoreContext("shared", tmp_path))
    await store.start()
    yield store
    await store.stop()


@pytest.fixture
async def daemons() -> AsyncIterator[list[PostgresDaemon]]:
    started: list[PostgresDaemon] = []
    yield started
    for d in started:
        if d.proc is not None and d.proc.returncode is None:
            assert await d.stop() == 0


def new_root() -> Path:
    path = Path(tempfile.mkdtemp(prefix="spg"))  # short: a socket path has at most 107 bytes
    os.chmod(path, 0o755)
    return path


async def submit_all(store: MessageStore, count: int, per_message: int) -> dict[str, list[str]]:
    """``count`` messages of ``per_message`` recipients each, submitted over the pool's four
    connections; Message-ID -> recipients."""
    outbox = await store.folder(FolderRole.OUTBOX)
    sent: dict[str, list[str]] = {}

    async def some(first: int) -> None:
        for n in range(first, count, 4):
            # (not r + 3 digits: the test server's Handler answers those with a scripted refusal)
            rcpts = [f"rcpt{n}.{k}@example.org" for k in range(per_message)]
            content = (
                f"From: s@example.org\r\nSubject: pg {n}\r\nMessage-ID: <pg{n}@test>\r\n\r\nbody {n}\r\n"
            )
            draft = Draft(content.encode(), [NewRecipient(r) for r in rcpts], sender="s@example.org")
            await store.submit_new(outbox.id, draft)
            sent[f"<pg{n}@test>"] = rcpts

    await asyncio.gather(*(some(k) for k in range(4)))
    return sent


async def drained(store: MessageStore, seconds: float) -> None:
    """Wait until the shared queue is empty: every daemon's finish wakes this client through NOTIFY."""
    async with store.subscribe(accept=lambda e: isinstance(e, QueueChanged)) as events:
        with anyio.fail_after(seconds):
            while [e async for e in store.outgoing_queue()]:
                await events.receive()
                events.pending()  # a burst of wake-ups needs one look at the queue


def received_pairs(handler: Any) -> Counter[tuple[str, str]]:
    pairs: Counter[tuple[str, str]] = Counter()
    for r in handler.received:
        header = next(line for line in r.content.split(b"\r\n") if line.startswith(b"Message-ID: "))
        pairs.update((header[len(b"Message-ID: ") :].decode(), rcpt) for rcpt in r.recipients)
    return pairs


def expected_pairs(sent: dict[str, list[str]]) -> Counter[tuple[str, str]]:
    return Counter((message_id, rcpt) for message_id, rcpts in sent.items() for rcpt in rcpts)


async def test_a_daemon_on_postgres_delivers_end_to_end(
    shared: dict[str, Any],
    client_store: MessageStore,
    smtp_server: ServerFactory,
    daemons: list[PostgresDaemon],
) -> None:
    server = smtp_server()
    daemon = PostgresDaemon(new_root(), shared, server.port)
    daemons.append(daemon)
    await daemon.start()
    sent = await submit_all(client_store, 3, 2)
    await drained(client_store, 30)
    assert received_pairs(server.handler) == expected_pairs(sent)
    sent_items = await client_store.list_messages((await client_store.folder(FolderRole.OUTBOX)).id)
    assert len(sent_items) == len(sent)
    for summary in sent_items:  # finished: off the queue, each recipient delivered
        message = await client_store.open(summary.id)
        assert not message.queued
        assert {r.state.value for r in message.recipients} == {"delivered"}
    await daemon.log_line(lambda line: b'"status": "sent"' in line or b"status=sent" in line)


SCALE = int(os.environ.get("SPOOLERD_PG_SCALE", "1500"))  # messages; the full run is 10000


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("shape", [(2, 1), (3, 5)], ids=["2daemons-1rcpt", "3daemons-5rcpt"])
async def test_daemons_sharing_one_store_deliver_each_recipient_exactly_once(
    shape: tuple[int, int],  # daemons, recipients per message
    shared: dict[str, Any],
    client_store: MessageStore,
    smtp_server: ServerFactory,
    daemons: list[PostgresDaemon],
) -> None:
    count, per_message = shape
    server = smtp_server()
    for _ in range(count):
        daemon = PostgresDaemon(new_root(), shared, server.port)
        daemons.append(daemon)
        await daemon.start()
    began = time.monotonic()
    sent = await submit_all(client_store, SCALE, per_message)
    await drained(client_store, 540)
    took = time.monotonic() - began
    got = received_pairs(server.handler)
    want = expected_pairs(sent)
    assert set(got) == set(want), f"{len(set(want) - set(got))} missing, {len(set(got) - set(want))} unknown"
    assert [pair for pair, n in got.items() if n > 1] == []
    # every daemon took part: each logged deliveries of its own
    shares = [sum(b'"status": "sent"' in line for line in daemon.log) for daemon in daemons]
    assert all(shares), f"a daemon delivered nothing: {shares}"
    print(
        f"\n{count} daemons, {SCALE} messages x {per_message}: {took:.1f} s, recipients per daemon {shares}"
    )


async def test_status_and_queue_say_which_daemon_holds_what(
    shared: dict[str, Any],
    client_store: MessageStore,
    smtp_server: ServerFactory,
    daemons: list[PostgresDaemon],
) -> None:
    """A message another daemon (here: a client holding a lease under another daemon's name) is
    delivering shows as held elsewhere, by that daemon, in this daemon's ``status`` and ``queue``."""
    server = smtp_server()
    daemon = PostgresDaemon(new_root(), shared, server.port)
    daemons.append(daemon)
    await daemon.start()
    outbox = await client_store.folder(FolderRole.OUTBOX)
    other = "spoolerd@otherhost:%2Fvar%2Flib%2Fspoolerd"
    draft = Draft(b"Subject: held\r\n\r\nbody\r\n", [NewRecipient("x@example.org")], sender="s@example.org")
    mid = await client_store.submit_new(outbox.id, draft, lock=(other + "#coupled:1", 300.0))
    ctl = await daemon.client()
    try:
        (row,) = [r for r in await ctl.ok("status") if r["resource_type"] == "store"]
        assert row["counters"] == {"queued": 1, "locked_here": 0, "locked_elsewhere": 1}, row
        assert row["holders"] == {other: 1}
        (entry,) = await ctl.ok("queue")
        assert (entry["id"], entry["locked_by"], entry["locked_here"]) == (mid, other + "#coupled:1", False)
        assert f"(being delivered by {other})" in show_queue([entry])
    finally:
        await ctl.stream.aclose()

"""PostgreSQL restarted under a running daemon: on a private cluster (tests/peers/pgcluster.py), the
server is stopped mid-delivery with its own ``immediate`` mode (every connection cut, no checkpoint) and
started again. Meanwhile the daemon shows the store failing in ``status`` with the reason; afterwards it
resumes by itself and every submitted (message, recipient) reaches the sink: nothing acknowledged is lost,
and the only duplicates are deliveries that were in flight when the server went away."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from spoolerd.message import FolderRole
from spoolerd.plugins import PluginRegistry
from spoolerd.store import MessageStore, StoreContext
from stores.postgres.testing import PostgresBackend
from tests.peers import pgcluster
from tests.postgres.test_daemons import (
    PostgresDaemon,
    drained,
    expected_pairs,
    new_root,
    received_pairs,
    smtp_server,
    submit_all,
)
from tests.smtp.conftest import ServerFactory

__all__ = ["smtp_server"]

DAEMON_PROCESSES = True  # one loop is enough (tests/postgres/conftest.py)

MESSAGES = 600
MAX_IN_FLIGHT = 16


@pytest.fixture(scope="module")
def cluster() -> Iterator[pgcluster.PrivateCluster]:
    if (problem := pgcluster.available()) is not None:
        pytest.skip(problem)
    server = pgcluster.PrivateCluster()
    server.start()
    yield server
    server.remove()


async def open_store(options: dict[str, Any], tmp_path: Path) -> MessageStore:
    store = PluginRegistry().open_store("postgres", options, StoreContext("shared", tmp_path))
    await store.start()
    return store


@pytest.fixture
async def options(cluster: pgcluster.PrivateCluster, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    backend = PostgresBackend(cluster.dsn)
    made = await backend.create(tmp_path)
    yield made
    if not cluster.running:
        cluster.start()  # a failed test may have left it stopped
    await backend.drop(made)


def store_row(status: list[dict[str, Any]]) -> dict[str, Any]:
    (row,) = [r for r in status if r["resource_type"] == "store" and r["name"] == "shared"]
    return row


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_postgres_restarted_mid_delivery_loses_nothing(
    cluster: pgcluster.PrivateCluster,
    options: dict[str, Any],
    smtp_server: ServerFactory,
    tmp_path: Path,
) -> None:
    server = smtp_server()
    client = await open_store(options, tmp_path)
    try:
        sent = await submit_all(client, MESSAGES, 2)
    finally:
        await client.stop()
    daemon = PostgresDaemon(new_root(), options, server.port)
    await daemon.start()
    try:
        # some deliveries done, many to go: the server goes away under the daemon
        await daemon.log_line(lambda line: line.count(b'"status": "sent"') > 0 and b"<pg100@test>" in line)
        began = len(daemon.log)
        cluster.stop("immediate")
        await daemon.log_line(lambda line: b"store failing" in line, began)
        ctl = await daemon.client()
        row = store_row(await ctl.ok("status"))
        assert row["status"] == ["failure"], row
        assert row["last_error"] and row["since"], row
        cluster.start()
        restarted = time.monotonic()
        await daemon.log_line(lambda line: b"store available again" in line, began)
        client = await open_store(options, tmp_path)
        try:
            await drained(client, 180)
            resumed = time.monotonic() - restarted
            outbox = await client.folder(FolderRole.OUTBOX)
            for summary in await client.list_messages(outbox.id):
                message = await client.open(summary.id)
                assert {r.state.value for r in message.recipients} == {"delivered"}, summary
        finally:
            await client.stop()
        assert store_row(await ctl.ok("status"))["status"] == ["available"]
    finally:
        for c in daemon.clients:
            await c.stream.aclose()
        assert await daemon.stop() == 0
    got, want = received_pairs(server.handler), expected_pairs(sent)
    print(
        f"\npostgres restarted mid-run: {len(want)} deliveries, {sum(got.values()) - len(got)} duplicates,"
        f" drained {resumed:.1f} s after the server came back"
    )
    assert set(got) == set(want), f"{len(set(want) - set(got))} lost"
    duplicates = sum(n - 1 for n in got.values())
    assert duplicates <= MAX_IN_FLIGHT * 2, duplicates  # in flight at the cut, each of two recipients

"""What only the PostgreSQL store has: a wake-up that survives a cut connection, schema versions, and a
password that never sits in the configuration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from spoolerd.errors import ConfigError, StoreUnavailable
from spoolerd.events import QueueChanged
from spoolerd.message import Draft, FolderRole, NewRecipient
from spoolerd.plugins import PluginRegistry
from spoolerd.store import MessageStore, StoreContext
from stores.postgres.schema import SCHEMA_VERSION
from stores.postgres.testing import PostgresBackend


@pytest.fixture
async def options(postgres_dsn: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    backend = PostgresBackend(postgres_dsn)
    made = await backend.create(tmp_path)
    yield made
    await backend.drop(made)


def build(options: dict[str, Any], location: Path) -> MessageStore:
    return PluginRegistry().open_store("postgres", options, StoreContext("shared", location))


async def submit_one(store: MessageStore) -> str:
    outbox = await store.folder(FolderRole.OUTBOX)
    mid = await store.create_message(
        outbox.id, Draft(b"Subject: x\r\n\r\nx", [NewRecipient("a@example.org")])
    )
    await store.submit(mid)
    return mid


async def test_a_cut_listener_reconnects_and_announces_one_rescan(
    options: dict[str, Any], tmp_path: Path
) -> None:
    waiter, writer = build(options, tmp_path), build(options, tmp_path)
    await waiter.start()
    await writer.start()
    try:
        async with waiter.subscribe() as events:
            await submit_one(writer)  # heard through NOTIFY
            with anyio.fail_after(10):
                assert await events.receive() == QueueChanged("shared", "external")
            # cut every connection of the waiter's listener (application_name and LISTEN tell it apart)
            admin = await asyncpg.connect(options["dsn"], timeout=10)
            try:
                cut = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'spoolerd' AND query = $1 AND pid <> pg_backend_pid()",
                    f'LISTEN "spoolerd_{options["schema_name"]}"',  # this store's only: not another run's
                )
            finally:
                await admin.close()
            assert cut >= 1
            with anyio.fail_after(10):  # the re-scan after reconnecting (or the writer's next NOTIFY)
                assert await events.receive() == QueueChanged("shared", "external")
            await submit_one(writer)  # and it listens again
            with anyio.fail_after(10):
                assert await events.receive() == QueueChanged("shared", "external")
    finally:
        await writer.stop()
        await waiter.stop()


async def test_a_schema_newer_than_the_code_is_refused(options: dict[str, Any], tmp_path: Path) -> None:
    store = build(options, tmp_path)
    await store.start()
    await store.stop()
    conn = await asyncpg.connect(options["dsn"], timeout=10)
    try:
        await conn.execute(
            f"UPDATE {options['schema_name']}.schema_version SET version = $1", SCHEMA_VERSION + 1
        )
    finally:
        await conn.close()
    with pytest.raises(StoreUnavailable, match="newer than this spoolerd understands"):
        await build(options, tmp_path).start()


async def test_starting_again_keeps_the_version_and_the_data(options: dict[str, Any], tmp_path: Path) -> None:
    first = build(options, tmp_path)
    await first.start()
    mid = await submit_one(first)
    await first.stop()
    again = build(options, tmp_path)
    await again.start()
    try:
        assert [e.id async for e in again.outgoing_queue()] == [mid]
    finally:
        await again.stop()


def test_a_password_in_the_dsn_is_refused(tmp_path: Path) -> None:
    for dsn in ("postgresql://u:secret@db/mail", "postgresql://u@db/mail?password=secret"):
        with pytest.raises(ConfigError) as caught:
            build({"dsn": dsn}, tmp_path)
        assert "must not contain a password" in str(caught.value)
        assert "secret" not in str(caught.value).replace(dsn, "")


async def test_the_password_comes_from_password_file(options: dict[str, Any], tmp_path: Path) -> None:
    # trust auth accepts any password: what is checked is that the file is read, and a missing one is
    # reported by check() under its key before start
    missing = build({**options, "password_file": "nope"}, tmp_path)
    with pytest.raises(ConfigError, match="password_file: cannot read"):
        missing.check()  # type: ignore[attr-defined]
    (tmp_path / "pw").write_text("s3cret\n")
    store = build({**options, "password_file": "pw"}, tmp_path)
    store.check()  # type: ignore[attr-defined]
    await store.start()
    await store.stop()

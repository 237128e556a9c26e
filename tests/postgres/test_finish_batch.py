"""The PostgreSQL store's group commit of finishes: concurrent finishes go together in one statement
and one transaction, each caller answered as if it had finished alone, and a batch that fails fails
every finish in it alike and finishes none."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg

from spoolerd.errors import InvalidArgument, NoSupport, NotFound, NotInQueue, StoreUnavailable
from spoolerd.message import Access, FolderRole, RecipientState, RecipientUpdate
from spoolerd.store import MessageStore
from spoolerd.testing.conformance.helpers import new_message, queue_ids, queued
from tests.postgres.test_store import build, options

__all__ = ["options"]

DELIVERED = RecipientUpdate(0, RecipientState.DELIVERED, "x", 250, "2.0.0", "ok")


async def started(options: dict[str, Any], tmp_path: Path) -> MessageStore:
    store = build(options, tmp_path)
    await store.start()
    return store


async def transactions(options: dict[str, Any], ids: list[str]) -> int:
    """How many transactions last wrote these messages' rows (their ``xmin``s)."""
    conn = await asyncpg.connect(options["dsn"], timeout=10)
    try:
        return int(
            await conn.fetchval(
                f"SELECT count(DISTINCT xmin::text) FROM {options['schema_name']}.messages"
                " WHERE id = ANY($1::bigint[])",
                [int(i) for i in ids],
            )
        )
    finally:
        await conn.close()


async def test_concurrent_finishes_commit_in_one_transaction(options: dict[str, Any], tmp_path: Path) -> None:
    store = await started(options, tmp_path)
    try:
        sent = await store.folder(FolderRole.SENT)
        ids = [await queued(store, sentmail_folder=sent.id) for _ in range(30)]
        assert len(await store.claim("spooler", 60, 30)) == 30
        await asyncio.gather(*(store.finish(mid, "spooler", outcomes=[DELIVERED]) for mid in ids))
        # the first finish goes at once, the others together behind it: without the batch, 30
        assert await transactions(options, ids) <= 2
        assert await queue_ids(store) == []
        assert sorted(s.id for s in await store.list_messages(sent.id)) == sorted(ids)
        for mid in ids:
            (r,) = (await store.open(mid)).recipients
            assert (r.state, r.attempts, r.last_code, r.last_text) == (RecipientState.DELIVERED, 1, 250, "ok")
    finally:
        await store.stop()


async def test_each_finish_in_a_batch_gets_its_own_answer(options: dict[str, Any], tmp_path: Path) -> None:
    """Finishes that fail, among others that succeed, fail exactly as a finish alone does, and change
    nothing; the others are finished together."""
    store = await started(options, tmp_path)
    try:
        sent = await store.folder(FolderRole.SENT)
        moved = [
            await queued(store, "a@example.org", "b@example.org", sentmail_folder=sent.id) for _ in range(6)
        ]
        left, deleted = await queued(store), await queued(store, delete_after_submit=True)
        other_owner, unknown_rcpt, unknown_of_deleted = (
            await queued(store, "a@example.org", "b@example.org"),
            await queued(store, "a@example.org", "b@example.org"),
            await queued(store, delete_after_submit=True),
        )
        twice = await queued(store)
        not_queued = await new_message(store)
        assert len(await store.claim("spooler", 60, 100)) == 12
        both = [DELIVERED, RecipientUpdate(1, RecipientState.FAILED, "x", 550, "5.1.1", "no")]
        calls = [store.finish(mid, "spooler", outcomes=both) for mid in moved] + [
            store.finish(left, "spooler"),
            store.finish(deleted, "spooler", outcomes=[DELIVERED]),
            store.finish(other_owner, "other", outcomes=both),
            store.finish(
                unknown_rcpt, "spooler", outcomes=[DELIVERED, RecipientUpdate(5, RecipientState.FAILED)]
            ),
            store.finish(unknown_of_deleted, "spooler", outcomes=[RecipientUpdate(2, RecipientState.FAILED)]),
            store.finish(twice, "spooler", outcomes=[DELIVERED]),
            store.finish(twice, "spooler", outcomes=[DELIVERED]),
            store.finish(not_queued, "spooler"),
            store.finish("999999", "spooler", outcomes=[DELIVERED]),
        ]
        answers = [
            None if a is None else (type(a), str(a))
            for a in await asyncio.gather(*calls, return_exceptions=True)
        ]
        assert answers == [None] * 6 + [
            None,
            None,
            (NoSupport, f"only the spooler holding message {other_owner}'s lock can finish it"),
            (InvalidArgument, f"message {unknown_rcpt} has no recipient #5"),
            (InvalidArgument, f"message {unknown_of_deleted} has no recipient #2"),
            None,
            (NotInQueue, f"message {twice} is not in the outgoing queue"),
            (NotInQueue, f"message {not_queued} is not in the outgoing queue"),
            (NotFound, "no message with id 999999"),
        ]
        assert await transactions(options, [*moved, left]) <= 2  # they went together
        assert await queue_ids(store) == [other_owner, unknown_rcpt, unknown_of_deleted]
        for mid in (other_owner, unknown_rcpt, unknown_of_deleted):  # refused whole: no outcome recorded
            message = await store.lock(mid, "spooler", 60)
            assert {(r.state, r.attempts) for r in message.recipients} == {(RecipientState.PENDING, 0)}
        for mid in moved:
            a, b = (await store.open(mid)).recipients
            assert (a.state, a.last_code, b.state, b.last_code) == (
                RecipientState.DELIVERED, 250, RecipientState.FAILED, 550,
            )  # fmt: skip
        assert sorted(s.id for s in await store.list_messages(sent.id)) == sorted(moved)
        outbox = [s.id for s in await store.list_messages((await store.folder(FolderRole.OUTBOX)).id)]
        assert left in outbox and twice in outbox and deleted not in outbox
        assert (await store.open(left, Access.MODIFY)).writable
    finally:
        await store.stop()


async def test_a_batch_that_fails_fails_each_finish_alike(options: dict[str, Any], tmp_path: Path) -> None:
    """A batch cut short (here by the statement timeout, while it waits for a row another transaction
    holds) answers every finish in it with the same error, and none of them happened."""
    store = await started({**options, "command_timeout": 1.0}, tmp_path)
    admin = await asyncpg.connect(options["dsn"], timeout=10)
    try:
        ids = [await queued(store) for _ in range(8)]
        assert len(await store.claim("spooler", 60, 8)) == 8
        async with admin.transaction():
            await admin.execute(
                f"SELECT 1 FROM {options['schema_name']}.messages WHERE id=$1 FOR UPDATE", int(ids[3])
            )
            answers = await asyncio.gather(
                *(store.finish(mid, "spooler", outcomes=[DELIVERED]) for mid in ids), return_exceptions=True
            )
        assert all(isinstance(a, StoreUnavailable) for a in answers), answers
        assert len({str(a) for a in answers}) == 1
        assert await queue_ids(store) == ids  # none finished
        for mid in ids:
            (r,) = (await store.lock(mid, "spooler", 60)).recipients  # still the spooler's
            assert r.attempts == 0
        await asyncio.gather(*(store.finish(mid, "spooler", outcomes=[DELIVERED]) for mid in ids))
        assert await queue_ids(store) == []
    finally:
        await admin.close()
        await store.stop()


async def test_a_finish_whose_values_fail_the_batch_fails_alone(
    options: dict[str, Any], tmp_path: Path
) -> None:
    """Values that PostgreSQL refuses (a code out of range, a NUL in a text) fail the batch statement:
    each finish in it then goes alone, so only theirs fail, as they do alone."""
    store = await started(options, tmp_path)
    try:
        good = [await queued(store) for _ in range(4)]
        huge, nul = await queued(store), await queued(store)
        assert len(await store.claim("spooler", 60, 10)) == 6
        bad_code = RecipientUpdate(0, RecipientState.DELIVERED, "x", 2**40)
        bad_text = RecipientUpdate(0, RecipientState.DELIVERED, "x", 250, "2.0.0", "a\x00b")
        answers = await asyncio.gather(
            *(store.finish(mid, "spooler", outcomes=[DELIVERED]) for mid in good),
            store.finish(huge, "spooler", outcomes=[bad_code]),
            store.finish(nul, "spooler", outcomes=[bad_text]),
            return_exceptions=True,
        )
        assert answers[:4] == [None] * 4
        assert isinstance(answers[4], StoreUnavailable) and "out of int32 range" in str(answers[4])
        assert isinstance(answers[5], StoreUnavailable) and "0x00" in str(answers[5])
        assert await queue_ids(store) == [huge, nul]
        for mid in good:
            (r,) = (await store.open(mid)).recipients
            assert (r.state, r.attempts) == (RecipientState.DELIVERED, 1)
    finally:
        await store.stop()

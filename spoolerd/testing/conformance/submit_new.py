"""Store conformance: ``submit_new`` creates and queues a message in one transaction."""

from __future__ import annotations

import random

import anyio
import pytest

from spoolerd.errors import InvalidArgument, NoAccess, NoRecipients, NotFound
from spoolerd.events import QueueChanged
from spoolerd.message import Draft, FolderRole, MessageFlag, NewRecipient, RecipientState, SubmitFlag
from spoolerd.store import MessageStore
from spoolerd.testing import FakeClock, StoreFactory

from .durability import run_and_kill

CONTENT = b"Subject: one step\r\n\r\n" + bytes(range(256))


def _new_draft(*recipients: str, **kw: object) -> Draft:
    rcpts = [NewRecipient(r) for r in recipients or ("b@example.org",)]
    return Draft(CONTENT, rcpts, **kw)  # type: ignore[arg-type]


async def _outbox_ids(store: MessageStore) -> list[str]:
    outbox = await store.folder(FolderRole.OUTBOX)
    return [m.id for m in await store.list_messages(outbox.id)]


async def _queue_ids(store: MessageStore) -> list[str]:
    return [e.id async for e in store.outgoing_queue()]


async def test_submit_new_files_and_queues_as_submit_does(store: MessageStore, clock: FakeClock) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    clock.advance(42)
    async with store.subscribe() as events:
        mid = await store.submit_new(
            outbox.id, _new_draft("a@example.org", "b@example.org", message_class="")
        )
        with anyio.fail_after(5):
            while not isinstance(event := await events.receive(), QueueChanged) or event.reason != "submit":
                pass  # another kind of change (an "external" wake-up, say) is not this announcement
    assert event == QueueChanged(store.name, "submit", mid)
    m = await store.open(mid)
    assert m.folder_id == outbox.id and m.content == CONTENT
    assert MessageFlag.SUBMIT in m.flags and MessageFlag.UNSENT in m.flags
    assert m.message_class == "IPM" and m.client_submit_time == clock.now
    assert m.submit_flags == SubmitFlag.NONE
    assert [(r.state, r.responsibility) for r in m.recipients] == [(RecipientState.PENDING, False)] * 2
    assert await _queue_ids(store) == [mid]
    assert await store.next_due() == clock.now


async def test_submit_new_with_preprocess_and_lock(store: MessageStore) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    mid = await store.submit_new(outbox.id, _new_draft(), preprocess=True, lock=("coupled", 60))
    with pytest.raises(NoAccess):  # queued already locked: the spooler cannot take it
        await store.lock(mid, "spooler", 60)
    taken = await store.lock(mid, "coupled", 60)
    assert SubmitFlag.PREPROCESS in taken.submit_flags and SubmitFlag.LOCKED in taken.submit_flags


@pytest.mark.parametrize(
    ("folder", "the_draft", "lock", "error"),
    [
        ("outbox", _new_draft(message_class=""), None, None),  # the control: this one is queued
        ("outbox", Draft(CONTENT, [], message_class=""), None, NoRecipients),
        ("outbox", _new_draft(), ("bad\r\nowner", 60), InvalidArgument),
        ("outbox", _new_draft(), ("owner", float("nan")), InvalidArgument),
        ("999999", _new_draft(), None, NotFound),
        ("outbox", _new_draft(sentmail_folder="999998"), None, NotFound),  # its sent-mail folder too
        ("outbox", _new_draft(sentmail_folder="sent"), None, NotFound),
    ],
)
async def test_a_refused_submit_new_leaves_nothing_behind(
    store: MessageStore,
    folder: str,
    the_draft: Draft,
    lock: tuple[str, float] | None,
    error: type[Exception] | None,
) -> None:
    outbox = await store.folder(FolderRole.OUTBOX)
    folder_id = outbox.id if folder == "outbox" else folder
    if error is None:
        mid = await store.submit_new(folder_id, the_draft, lock=lock)
        assert (await _outbox_ids(store), await _queue_ids(store)) == ([mid], [mid])
        return
    with pytest.raises(error):
        await store.submit_new(folder_id, the_draft, lock=lock)
    assert (await _outbox_ids(store), await _queue_ids(store)) == ([], [])


async def test_submit_new_is_durable_across_a_reopen(store_factory: StoreFactory) -> None:
    store = await store_factory.open()
    outbox = await store.folder(FolderRole.OUTBOX)
    ids = [await store.submit_new(outbox.id, _new_draft(f"r{n}@example.org")) for n in range(3)]
    await store_factory.close(store)
    again = await store_factory.open()
    assert await _queue_ids(again) == ids
    for n, mid in enumerate(ids):
        m = await again.open(mid)
        assert m.queued and m.content == CONTENT
        assert [r.address for r in m.recipients] == [f"r{n}@example.org"]


KILLS = 6


@pytest.mark.timeout(120)
async def test_sigkill_leaves_a_queued_message_or_nothing(store_factory: StoreFactory) -> None:
    """A writer killed at random points during ``submit_new``: every acknowledged message is queued and no
    message is left in the Outbox unqueued (with ``create_message`` then ``submit`` drafts are left)."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    acknowledged: list[str] = []
    for _ in range(KILLS):
        acknowledged += await run_and_kill(store_factory, rng.uniform(0.05, 0.4), "submit-new")
    assert acknowledged, f"the child never got to submit anything (seed {seed})"
    store = await store_factory.open()
    queued = set(await _queue_ids(store))
    assert [mid for mid in acknowledged if mid not in queued] == [], f"seed {seed}"
    assert [mid for mid in await _outbox_ids(store) if mid not in queued] == [], f"drafts left (seed {seed})"

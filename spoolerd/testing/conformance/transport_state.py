"""A transport's memory in the store (what IMAP download keeps: UIDVALIDITY and the UIDs taken): read by
prefix, changed, forgotten, durable, and committed together with the message it concerns."""

from __future__ import annotations

import pytest

from spoolerd.errors import InvalidArgument
from spoolerd.message import FolderRole, InboundMessage, StateChange
from spoolerd.store import MessageStore
from spoolerd.testing import StoreFactory

MAIL = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


async def inbox_size(store: MessageStore) -> int:
    return len(await store.list_messages((await store.folder(FolderRole.INBOX)).id))


async def test_state_is_kept_per_transport_and_read_by_prefix(store: MessageStore) -> None:
    assert await store.transport_state("imap") == {}
    await store.set_transport_state(
        StateChange(
            "imap", {"acct/INBOX/uidvalidity": b"42", "acct/INBOX/uid/7": b"", "acct/Sent/uid/1": b""}
        )
    )
    await store.set_transport_state(StateChange("other", {"acct/INBOX/uidvalidity": b"1"}))
    assert await store.transport_state("imap", "acct/INBOX/") == {
        "acct/INBOX/uidvalidity": b"42",
        "acct/INBOX/uid/7": b"",
    }
    assert len(await store.transport_state("imap")) == 3
    assert await store.transport_state("other") == {"acct/INBOX/uidvalidity": b"1"}


async def test_prefix_matches_every_key_that_starts_with_it(store: MessageStore) -> None:
    keys = {"a": b"1", "a\U0010ffff": b"2", "a\U0010ffffz": b"3", "ab": b"4", "b": b"5", "A": b"6"}
    await store.set_transport_state(StateChange("t", keys))
    assert set(await store.transport_state("t", "a")) == {"a", "a\U0010ffff", "a\U0010ffffz", "ab"}
    assert set(await store.transport_state("t", "a%")) == set()  # no LIKE wildcards either


async def test_state_changes_and_is_forgotten(store: MessageStore) -> None:
    await store.set_transport_state(StateChange("imap", {"k": b"1", "gone": b"x"}))
    await store.set_transport_state(StateChange("imap", {"k": b"2", "gone": None, "absent": None}))
    assert await store.transport_state("imap") == {"k": b"2"}


async def test_deliver_commits_the_state_with_the_message(store: MessageStore) -> None:
    delivery = await store.deliver(InboundMessage(MAIL), state=StateChange("imap", {"acct/INBOX/uid/9": b""}))
    assert (await store.open(delivery.message_id)).content == MAIL
    assert await store.transport_state("imap") == {"acct/INBOX/uid/9": b""}


@pytest.mark.parametrize(
    "bad",
    [StateChange("", {"k": b""}), StateChange("imap", {"": b""}), StateChange("imap", {"a\r\nb": b""})],
)
async def test_a_bad_state_change_delivers_nothing(store: MessageStore, bad: StateChange) -> None:
    with pytest.raises(InvalidArgument):
        await store.deliver(InboundMessage(MAIL), state=bad)
    assert await inbox_size(store) == 0
    with pytest.raises(InvalidArgument):
        await store.set_transport_state(bad)


async def test_state_survives_a_reopen(store_factory: StoreFactory) -> None:
    store = await store_factory.open()
    await store.deliver(InboundMessage(MAIL), state=StateChange("imap", {"acct/INBOX/uidvalidity": b"42"}))
    await store_factory.close(store)
    again = await store_factory.open()
    assert await again.transport_state("imap") == {"acct/INBOX/uidvalidity": b"42"}
    assert await inbox_size(again) == 1

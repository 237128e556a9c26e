"""Shared state (``spoolerd.shared_state``), for a store that has it: a key of a transport's memory read,
changed and written back in one step, so that two stores open on the same data (two processes, two
daemons) never lose one another's change."""

from __future__ import annotations

import asyncio

import pytest

from spoolerd.errors import InvalidArgument
from spoolerd.message import StateChange
from spoolerd.shared_state import SharedState
from spoolerd.store import MessageStore
from spoolerd.testing import StoreFactory


def shared_of(store: MessageStore) -> SharedState:
    if not isinstance(store, SharedState):
        pytest.skip("this store keeps no shared state (an optional ability)")
    return store


def plus_one(value: bytes | None) -> tuple[bytes | None, int]:
    n = int(value or b"0") + 1
    return str(n).encode(), n


async def test_an_update_reads_writes_and_answers(store: MessageStore) -> None:
    shared = shared_of(store)
    assert await shared.update_transport_state("rates", "k", plus_one) == 1
    assert await shared.update_transport_state("rates", "k", plus_one) == 2
    assert await store.transport_state("rates") == {"k": b"2"}
    seen = await shared.update_transport_state("rates", "k", lambda value: (None, value))  # writes nothing
    assert seen == b"2" and await store.transport_state("rates") == {"k": b"2"}
    assert await shared.update_transport_state("rates", "new", lambda value: (None, value)) is None
    assert await store.transport_state("rates") == {"k": b"2"}  # nor a key that was not there
    await store.set_transport_state(StateChange("rates", {"k": None}))
    assert await shared.update_transport_state("rates", "k", plus_one) == 1  # forgotten: from nothing


async def test_two_stores_on_the_same_data_lose_no_update(store_factory: StoreFactory) -> None:
    """200 increments, half through each of two stores open at once, all in flight together: each
    reads what the last one wrote, so the answers are 1 to 200, each once."""
    a, b = await store_factory.open(), await store_factory.open()
    shared_a, shared_b = shared_of(a), shared_of(b)
    answers = await asyncio.gather(
        *(s.update_transport_state("rates", "n", plus_one) for _ in range(100) for s in (shared_a, shared_b))
    )
    assert sorted(answers) == list(range(1, 201))
    assert await a.transport_state("rates") == {"n": b"200"} == await b.transport_state("rates")


async def test_a_failing_change_writes_nothing(store: MessageStore) -> None:
    shared = shared_of(store)
    await shared.update_transport_state("rates", "k", plus_one)

    def broken(value: bytes | None) -> tuple[bytes | None, None]:
        raise ValueError("a bug in the change")

    with pytest.raises(Exception):  # noqa: B017 - how a store reports it is its own; nothing is kept
        await shared.update_transport_state("rates", "k", broken)
    assert await store.transport_state("rates") == {"k": b"1"}


async def test_a_bad_name_or_key_is_refused(store: MessageStore) -> None:
    shared = shared_of(store)
    for transport, key in (("", "k"), ("a\r\nb", "k"), ("rates", ""), ("rates", "a\r\nb")):
        with pytest.raises(InvalidArgument):
            await shared.update_transport_state(transport, key, plus_one)
    assert await store.transport_state("rates") == {}

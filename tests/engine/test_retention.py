"""Sent Items retention in a running spooler: the timer purges what came due and keeps the rest, sleeps
until then (no wake-ups while nothing is due, however much mail is sent), and fires on time by itself."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from spoolerd.message import Draft, FolderRole, NewRecipient, RecipientState, RecipientUpdate
from spoolerd.plugins import PluginRegistry
from spoolerd.retention import Filing, SentKeeper, filing
from spoolerd.store import StoreContext
from tests.conftest import FakeClock
from tests.engine.harness import Harness, spooler

DAY = 86400.0


def store_with(**keys: Any) -> dict[str, Any]:
    return {"stores": {"local": {"provider": "sqlite", "addresses": ["@localhost"], **keys}}}


async def sent_copy(h: Harness) -> str:
    mid = await h.submit("me@localhost")
    await h.finished(mid)
    return mid


async def sent_ids(h: Harness) -> list[str]:
    return [m.id for m in await h.folder(FolderRole.SENT)]


async def purged_after_wake(h: Harness, keeper: SentKeeper) -> dict[str, Any]:
    """Wake the keeper (the fake clock moved) and wait for the purge it reports."""
    async with h.spooler.events.subscribe() as events:
        keeper.wake()
        with anyio.fail_after(10):
            while (event := await events.receive())["type"] != "purged":
                pass
    return event


async def test_the_timer_purges_an_old_copy_and_keeps_a_young_one(tmp_path: Path, clock: FakeClock) -> None:
    async with spooler(tmp_path, clock, **store_with(sent_retention="7d")) as h:
        keeper = h.daemon.keepers["local"]
        start = clock.now
        old = await sent_copy(h)
        clock.advance(DAY)
        young = await sent_copy(h)
        assert sorted(await sent_ids(h), key=int) == sorted([old, young], key=int)

        clock.advance(6 * DAY + 60)  # the old copy is a minute past its week, the young one is not
        event = await purged_after_wake(h, keeper)
        assert event == {"type": "purged", "store": "local", "folder": "sent", "count": 1}
        assert await sent_ids(h) == [young]
        assert keeper.due == start + DAY + 7 * DAY  # re-armed for the young copy
        assert keeper.purged == 1

        clock.advance(DAY)
        assert (await purged_after_wake(h, keeper))["count"] == 1
        assert await sent_ids(h) == []
        assert keeper.due is None  # nothing kept: unarmed until a finish


async def test_copies_kept_at_start_arm_the_timer(tmp_path: Path, clock: FakeClock) -> None:
    async with spooler(tmp_path, clock, **store_with(sent_retention="forever")) as h:
        assert h.daemon.keepers == {}  # kept for ever: no timer at all
        mid = await sent_copy(h)
        filed = clock.now
    clock.advance(DAY / 2)
    async with spooler(tmp_path, clock, **store_with(sent_retention="1d")) as h:
        keeper = h.daemon.keepers["local"]
        assert keeper.due == filed + DAY  # read from the store at start
        assert await sent_ids(h) == [mid]
        clock.advance(DAY)
        assert (await purged_after_wake(h, keeper))["count"] == 1
        assert await sent_ids(h) == []


async def test_the_timer_does_not_wake_while_nothing_is_due(tmp_path: Path) -> None:
    async with spooler(tmp_path, time.time, **store_with(sent_retention="7d")) as h:  # type: ignore[arg-type]
        await sent_copy(h)
    async with spooler(tmp_path, time.time, **store_with(sent_retention="7d")) as h:  # type: ignore[arg-type]
        keeper = h.daemon.keepers["local"]
        assert keeper.due is not None  # armed at start, for the copy kept from before
        before = keeper.wakeups
        for _ in range(20):  # more copies, each finish an event the armed timer turns down
            await sent_copy(h)
        await anyio.sleep(1.0)  # a measurement window, not a wait for state
        assert keeper.wakeups == before
        assert len(await sent_ids(h)) == 21


async def test_an_idle_store_with_nothing_kept_never_wakes_the_timer(tmp_path: Path) -> None:
    async with spooler(tmp_path, time.time, **store_with(sent_retention="7d")) as h:  # type: ignore[arg-type]
        keeper = h.daemon.keepers["local"]
        await anyio.sleep(1.0)  # a measurement window, not a wait for state
        assert keeper.wakeups == 0
        assert keeper.due is None


async def test_the_timer_fires_on_time_by_itself(tmp_path: Path) -> None:
    async with spooler(tmp_path, time.time, **store_with(sent_retention="1s")) as h:  # type: ignore[arg-type]
        async with h.spooler.events.subscribe() as events:
            started = time.monotonic()
            await sent_copy(h)
            with anyio.fail_after(10):
                while (event := await events.receive())["type"] != "purged":
                    pass
        assert event["count"] == 1
        assert 0.5 <= time.monotonic() - started < 5
        assert await sent_ids(h) == []
        assert h.daemon.keepers["local"].wakeups <= 3


@pytest.mark.parametrize(
    ("keeps", "sentmail", "delete", "expected"),
    [
        (True, True, False, Filing(True, False)),
        (False, True, False, Filing(False, True)),  # no copy, and not left in the Outbox either
        (False, False, False, Filing(False, False)),  # the submitter's own choice stands
        (True, False, True, Filing(False, True)),
        (False, True, True, Filing(False, True)),
    ],
)
def test_filing_follows_the_store_setting(
    keeps: bool, sentmail: bool, delete: bool, expected: Filing
) -> None:
    assert filing(keeps, sentmail=sentmail, delete_after_submit=delete) == expected


async def test_a_copy_another_process_filed_arms_the_timer(tmp_path: Path, clock: FakeClock) -> None:
    """A delivery worker (or another daemon) on the same store files a sent copy: this daemon's keeper,
    unarmed, hears of it as an external change and arms for it."""
    async with spooler(tmp_path, clock, **store_with(sent_retention="7d")) as h:
        keeper = h.daemon.keepers["local"]
        assert keeper.due is None
        path = str(h.store.path)  # type: ignore[attr-defined]
        other = PluginRegistry().open_store("sqlite", {"path": path}, StoreContext("local", tmp_path, clock))
        await other.start()
        try:
            outbox, sent = await other.folder(FolderRole.OUTBOX), await other.folder(FolderRole.SENT)
            draft = Draft(
                b"Subject: s\r\n\r\nx\r\n", [NewRecipient("a@remote.test")], sentmail_folder=sent.id
            )
            mid = await other.create_message(outbox.id, draft)
            await other.submit(mid, lock=("worker", 60))  # queued under its lease: ours never tries it
            done = RecipientUpdate(0, RecipientState.DELIVERED, "relay", 250, "2.0.0", "ok")
            async with h.spooler.events.subscribe() as events:
                await other.finish(mid, "worker", outcomes=[done])
                clock.advance(7 * DAY + 60)
                keeper.wake()
                with anyio.fail_after(10):
                    while (event := await events.receive())["type"] != "purged":
                        pass
            assert event["count"] == 1
        finally:
            await other.stop()


async def test_copies_filed_one_by_one_are_purged_together(tmp_path: Path, clock: FakeClock) -> None:
    """A purge and its line per copy was thousands a day: after a purge the next waits a hundredth of
    the retention (at most an hour), and takes every copy that came due meanwhile."""
    async with spooler(tmp_path, clock, **store_with(sent_retention="7d")) as h:
        keeper = h.daemon.keepers["local"]
        first = clock.now
        await sent_copy(h)
        for _ in range(3):  # three more, a minute apart
            clock.advance(60)
            await sent_copy(h)
        clock.advance(7 * DAY - 3 * 60 + 30)  # the first is half a minute past due
        assert (await purged_after_wake(h, keeper))["count"] == 1
        assert keeper.due == first + 7 * DAY + 30 + 3600  # not a minute later, for the second alone
        clock.advance(3600)
        assert (await purged_after_wake(h, keeper))["count"] == 3
        assert keeper.purged == 4 and await sent_ids(h) == []

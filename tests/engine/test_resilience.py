"""Failure paths: shutdown with sends in flight, failures in optional steps, broken plugins, store errors,
limits that must not block each other. Each of these was once a bug (found by review)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from spoolerd.errors import NoAccess, StoreUnavailable
from spoolerd.message import FolderRole, Message, RecipientState
from spoolerd.preprocess import PreprocessResult
from tests.conftest import FakeClock
from tests.engine.harness import outlive_the_lease, spooler
from tests.engine.test_coupled_and_limits import draft


def scripted(**settings: object) -> dict[str, object]:
    return {"provider": "test-scripted", **settings}


async def test_shutdown_lets_a_send_in_flight_finish(tmp_path: Path, clock: FakeClock) -> None:
    async with spooler(tmp_path, clock, {"remote": scripted(delay=0.5)}) as h:
        mid = await h.submit("a@remote.test")
        with anyio.fail_after(10):
            await h.transport("remote").entered.wait()
        await h.spooler.shutdown(deadline=10.0)
        (r,) = (await h.message(mid)).recipients
        assert r.state is RecipientState.DELIVERED  # finished within the deadline, not cut off


async def test_shutdown_deadline_cancels_and_unlocks(tmp_path: Path, clock: FakeClock) -> None:
    async with spooler(tmp_path, clock, {"remote": scripted()}) as h:
        remote = h.transport("remote")
        remote.gate = anyio.Event()  # never opens
        mid = await h.submit("a@remote.test")
        with anyio.fail_after(10):
            await remote.entered.wait()
            await h.spooler.shutdown(deadline=0.2)
        entry = next(iter([e async for e in h.store.outgoing_queue() if e.id == mid]))
        assert entry.lock_owner is None  # handed back, so the next start takes it at once


async def test_a_failed_delay_warning_keeps_the_attempts_outcomes(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"remote": scripted(temp_fail=["x@remote.test"])}
    async with spooler(tmp_path, clock, transports, spooler={"delay_warning_after": 3600}) as h:
        mid = await h.submit("x@remote.test", "ok@remote.test")
        clock.advance(7200)
        real = h.store.deliver
        failures = [StoreUnavailable("disk busy")]

        async def flaky(message: object) -> object:
            if failures:
                raise failures.pop()
            return await real(message)  # type: ignore[arg-type]

        h.store.deliver = flaky  # type: ignore[method-assign]
        await h.spooler.flush(message_ids=[mid])
        await h.spooler.flush(force=True, message_ids=[mid])
        sent = [address for _mid, address, _content in h.transport("remote").delivered]
        assert sent.count("ok@remote.test") == 1


async def test_a_one_member_list_is_expanded(tmp_path: Path, clock: FakeClock) -> None:
    async with spooler(tmp_path, clock, lists={"team@localhost": ["alice@localhost"]}) as h:
        mid = await h.submit("team@localhost")
        await h.finished(mid)
        assert [r.address for r in (await h.message(mid)).recipients] == ["alice@localhost"]


async def test_flush_force_still_honours_the_deferred_send_time(tmp_path: Path, clock: FakeClock) -> None:
    async with spooler(tmp_path, clock, {"remote": scripted()}) as h:
        await h.submit("a@remote.test", not_before=clock.now + 86400)
        assert (await h.spooler.flush(force=True)).messages == 0
        assert h.transport("remote").calls == []


async def test_a_broken_preprocessor_backs_off_and_the_message_still_ends(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with spooler(tmp_path, clock, {"remote": scripted()}) as h:

        class Boom:
            name = "boom"

            async def __call__(self, message: Message, now: float) -> PreprocessResult:
                raise ValueError("bad preprocessor")

        h.spooler.dispatcher.preprocessors.append(Boom())
        mid = await h.submit("a@remote.test")
        result = await h.spooler.flush(message_ids=[mid])
        (entry,) = [e async for e in h.store.outgoing_queue() if e.id == mid]
        assert entry.lock_owner is None and entry.due_at == clock.now + 300  # released with a backoff
        assert result.sent == 0
        clock.advance(6 * 86400)
        await h.spooler.flush(message_ids=[mid])
        await h.finished(mid)
        (ndr,) = await h.folder(FolderRole.INBOX)
        assert b"Status: 4.4.7" in ndr.content


async def test_a_slow_destination_does_not_hold_the_transports_slots(
    tmp_path: Path, clock: FakeClock
) -> None:
    transports = {"remote": {"provider": "test-scripted", "concurrency": 2}}
    async with spooler(tmp_path, clock, transports, spooler={"destination_concurrency": 1}) as h:
        remote = h.transport("remote")
        slow_gate = anyio.Event()
        send = remote._send

        async def gated(message: Message, recipients: list[object]) -> object:
            if recipients[0].address.endswith("@slow.test"):  # type: ignore[attr-defined]
                await slow_gate.wait()
            return await send(message, recipients)

        remote._send = gated
        await h.submit("a@slow.test")
        await h.submit("b@slow.test")  # waits for slow.test's only slot, not for the transport's
        fast = await h.submit("c@fast.test")
        await h.finished(fast)
        slow_gate.set()


async def test_a_dead_destination_is_rechecked_after_waiting_for_its_slot(
    tmp_path: Path, clock: FakeClock
) -> None:
    transports = {"remote": scripted(connection_down=True, delay=0.05)}
    async with spooler(tmp_path, clock, transports, spooler={"destination_concurrency": 1}) as h:
        ids = [await h.submit(f"u{i}@down.test") for i in range(4)]
        await h.spooler.flush(message_ids=ids, due_only=True)  # as the scheduler starts them
        assert len(h.transport("remote").calls) == 1


async def test_a_store_read_error_does_not_stop_the_spooler(tmp_path: Path, clock: FakeClock) -> None:
    async with spooler(tmp_path, clock) as h:
        real = h.store.next_due
        errors = [StoreUnavailable("database is locked")] * 2

        async def flaky() -> float | None:
            if errors:
                raise errors.pop()
            return await real()

        h.store.next_due = flaky  # type: ignore[method-assign]
        mid = await h.submit("me@localhost")
        await h.finished(mid)
        assert h.spooler.counters.delivered == 1


@pytest.mark.parametrize("call", ["next_due", "claim"])
async def test_a_store_plugin_bug_fails_the_store_for_a_while_and_does_not_stop_the_spooler(
    tmp_path: Path, clock: FakeClock, call: str
) -> None:
    """An exception that is not a StoreError (a store plugin's bug) from a call of the scheduler's marks
    the store failing, as a StoreError does, instead of ending the scheduler and the daemon with it."""
    async with spooler(tmp_path, clock) as h:
        real = getattr(h.store, call)
        errors = [RuntimeError("a bug in the store")]

        async def buggy(*args: object) -> object:
            if errors:
                raise errors.pop()
            return await real(*args)

        setattr(h.store, call, buggy)
        async with h.spooler.events.subscribe() as events:
            mid = await h.submit("me@localhost")
            with anyio.fail_after(10):
                async for event in events:
                    if event.get("type") == "status_changed" and event.get("state") == "failing":
                        break
            assert event["entry_id"] == "store:local" and "a bug in the store" in str(event["last_error"])
        await h.finished(mid)  # once its wait is over
        assert h.spooler.counters.delivered == 1


async def test_a_failing_download_is_retried_not_fatal(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spoolerd_testplugins.transports import InboundTransport

    tries = anyio.Event()
    count = 0

    async def receive(self: InboundTransport) -> object:
        nonlocal count
        count += 1
        if count == 2:
            tries.set()
        raise ConnectionResetError("imap connection dropped")
        yield  # pragma: no cover - makes this an async generator

    monkeypatch.setattr(InboundTransport, "receive", receive)
    transports = {"feed": {"provider": "test-inbound"}, "loopback": {"provider": "loopback"}}
    async with spooler(tmp_path, clock, transports) as h:
        with anyio.fail_after(10):
            await tries.wait()  # failed, backed off, tried again
        # the transport's status row is failing with why, since the first failure (issue #18 part 4)
        row = h.spooler.dispatcher.transports[0].resource
        assert row.state == "failing" and "ConnectionResetError: imap connection dropped" in str(
            row.last_error
        )
        assert row.failing_since is not None and row.since == row.failing_since
        mid = await h.submit("me@localhost")
        await h.finished(mid)  # and the spooler is still delivering


async def test_a_coupled_hand_over_keeps_its_lease(tmp_path: Path, clock: FakeClock) -> None:
    stores = {"local": {"provider": "sqlite", "addresses": ["@localhost"], "coupled_transport": "remote"}}
    async with spooler(
        tmp_path, clock, {"remote": scripted()}, stores=stores, spooler={"preprocessors": []}
    ) as h:
        dispatcher = h.spooler.dispatcher
        dispatcher.settings = replace(dispatcher.settings, lease=1.5)  # renewed every 0.5 s
        remote = h.transport("remote")
        remote.gate = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(h.daemon.submitter.submit_new, "local", await draft(h, "far@remote.test"))
            with anyio.fail_after(10):
                await remote.entered.wait()
            (mid,) = [e.id async for e in h.store.outgoing_queue()]  # queued, locked by the hand-over
            await outlive_the_lease(clock, 1.5)  # store time passes the first lease's expiry
            with pytest.raises(NoAccess):
                await h.store.lock(mid, "intruder", 60)
            remote.gate.set()
        assert [m for m, _ in remote.calls] == [mid]
        assert [m.id for m in await h.folder(FolderRole.SENT)] == [mid]


async def test_a_renewal_that_raises_does_not_stop_the_spooler(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One renewer serves every lease: a store plugin raising something unexpected from renew must
    cost at most that renewal, never the spooler (nor the other attempts)."""
    async with spooler(tmp_path, clock, {"remote": scripted()}) as h:
        dispatcher = h.spooler.dispatcher
        dispatcher.settings = replace(dispatcher.settings, lease=0.6)  # renewals every 0.2 s
        renewed = anyio.Event()

        async def broken_renew(message_id: str, owner: str, lease: float) -> None:
            renewed.set()
            raise ConnectionError("a plugin's surprise")

        monkeypatch.setattr(h.store, "renew", broken_renew)
        remote = h.transport("remote")
        remote.gate = anyio.Event()
        mid = await h.submit("a@remote.test")
        with anyio.fail_after(10):
            await renewed.wait()  # the renewer hit the error ...
        remote.gate.set()
        await h.finished(mid)  # ... and the attempt, and the spooler, went on
        second = await h.submit("b@remote.test")
        await h.finished(second)


async def test_a_reload_with_a_shorter_lease_rearms_the_renewer(tmp_path: Path, clock: FakeClock) -> None:
    async with spooler(tmp_path, clock, {"remote": scripted()}) as h:
        dispatcher = h.spooler.dispatcher
        remote = h.transport("remote")
        remote.gate = anyio.Event()
        first = await h.submit("a@remote.test")
        with anyio.fail_after(10):
            await remote.until_concurrent(1)  # held under the 300 s lease: the renewer sleeps 100 s
        dispatcher.settings = replace(dispatcher.settings, lease=1.5)  # a reload
        second = await h.submit("b@remote.test")  # locked for 1.5 s of store time
        with anyio.fail_after(10):
            await remote.until_concurrent(2)
        await outlive_the_lease(clock, 1.5)  # without re-arming, nothing would renew it for 100 s
        with pytest.raises(NoAccess):
            await h.store.lock(second, "intruder", 60)
        remote.gate.set()
        await h.finished(first)
        await h.finished(second)


async def test_a_lock_whose_answer_was_lost_is_handed_back_once_the_store_answers(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A database connection cut at the lock's commit: the lease is taken but the spooler never heard.
    Once the store answers again the spooler hands it back and delivers at once, instead of waiting out
    the lease (tests/postgres/test_faults.py meets it by chance when PostgreSQL restarts)."""
    async with spooler(tmp_path, clock, {"remote": scripted()}) as h:
        real = h.store.lock
        lost = [StoreUnavailable("connection lost at commit")]

        async def committed_but_unanswered(message_id: str, owner: str, lease: float) -> object:
            message = await real(message_id, owner, lease)
            if lost:
                raise lost.pop()
            return message

        async def claims_nothing(owner: str, lease: float, limit: int) -> list[object]:
            return []  # the spooler's own scan leases nothing: the flush's lock is the one under test

        h.store.lock = committed_but_unanswered  # type: ignore[method-assign]
        h.store.claim = claims_nothing  # type: ignore[attr-defined]
        mid = await h.submit("a@remote.test")
        await h.spooler.flush(message_ids=[mid])  # the lock "fails": the store is failing a while
        (entry,) = [e async for e in h.store.outgoing_queue() if e.id == mid]
        assert entry.lock_owner is not None  # taken, though the spooler never heard
        await h.spooler.dispatcher.settle_unlocks(h.store)  # what the next scan does first
        (entry,) = [e async for e in h.store.outgoing_queue() if e.id == mid]
        assert entry.lock_owner is None  # handed back: due at once, not after the lease

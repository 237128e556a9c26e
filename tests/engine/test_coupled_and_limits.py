"""The tightly coupled store, ordering and concurrency limits."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import anyio

from spoolerd.message import Draft, FolderRole, NewRecipient, RecipientState
from tests.conftest import FakeClock
from tests.engine.harness import CONTENT, Harness, spooler

COUPLED_STORES = {
    "local": {"provider": "sqlite", "addresses": ["@localhost"], "coupled_transport": "loopback"}
}


async def draft(h: Harness, *to: str) -> Draft:
    sent = await h.store.folder(FolderRole.SENT)
    return Draft(CONTENT, [NewRecipient(a) for a in to], sender="me@localhost", sentmail_folder=sent.id)


async def test_coupled_store_finishes_local_mail_inside_submit(tmp_path: Path, clock: FakeClock) -> None:
    async with spooler(tmp_path, clock, stores=COUPLED_STORES, spooler={"preprocessors": []}) as h:
        result = await h.daemon.submitter.submit_new(
            "local", await draft(h, "alice@localhost", "bob@localhost")
        )
        mid = result.message_id
        assert (result.queued, result.handled) == (False, 2)
        # already finished when submit returned: in Sent Items, a copy in the Inbox, the spooler idle
        assert [m.id for m in await h.folder(FolderRole.SENT)] == [mid]
        assert len(await h.folder(FolderRole.INBOX)) == 1
        assert h.spooler.counters.delivered == 0
        assert [(r.state, r.transport) for r in (await h.message(mid)).recipients] == [
            (RecipientState.DELIVERED, "loopback")
        ] * 2


async def test_coupled_store_queues_the_rest_for_the_spooler(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"loopback": {"provider": "loopback"}, "remote": {"provider": "test-scripted"}}
    async with spooler(
        tmp_path, clock, transports, stores=COUPLED_STORES, spooler={"preprocessors": []}
    ) as h:
        result = await h.daemon.submitter.submit_new(
            "local", await draft(h, "alice@localhost", "far@remote.test")
        )
        mid = result.message_id
        assert (result.queued, result.handled) == (True, 1)
        await h.finished(mid)
        assert h.transport("remote").calls == [(mid, ["far@remote.test"])]  # the spooler sent only the rest
        assert h.spooler.counters.delivered == 1
        states = {r.address: (r.state, r.transport) for r in (await h.message(mid)).recipients}
        assert states == {
            "alice@localhost": (RecipientState.DELIVERED, "loopback"),
            "far@remote.test": (RecipientState.DELIVERED, "remote"),
        }


async def test_coupled_store_with_preprocessing_takes_its_share_after_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Seed 004: with NEEDS_PREPROCESSING (the default headers preprocessor) submit queues and returns;
    the spooler preprocesses and submits again, then the coupled transport takes what it serves even
    though a transport before it serves that type too, and the spooler sends the rest."""
    transports = {"remote": {"provider": "test-scripted"}, "loopback": {"provider": "loopback"}}
    async with spooler(tmp_path, clock, transports, stores=COUPLED_STORES) as h:
        result = await h.daemon.submitter.submit_new(
            "local", await draft(h, "alice@localhost", "far@remote.test")
        )
        mid = result.message_id
        assert (result.queued, result.handled) == (True, 0)  # nothing handled inside submit
        await h.finished(mid)
        assert h.transport("remote").calls == [(mid, ["far@remote.test"])]
        states = {r.address: r.transport for r in (await h.message(mid)).recipients}
        assert states == {"alice@localhost": "loopback", "far@remote.test": "remote"}
        (copy,) = await h.folder(FolderRole.INBOX)
        assert b"Message-ID: " in (await h.message(copy.id)).content  # preprocessed before the hand-over


async def test_coupled_hand_over_at_submit_raises_events_and_honours_sender_routes(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Seed 004 without preprocessing: the coupled transport's deferral inside submit raises a
    ``deferred`` event as the spooler's do; a sender [sender_routes] keeps from it is not handed over."""
    transports = {
        "remote": {"provider": "test-scripted"},
        "mine": {"provider": "test-scripted", "temp_fail": ["busy@localhost"]},
    }
    stores = {"local": {"provider": "sqlite", "addresses": ["@localhost"], "coupled_transport": "mine"}}
    async with spooler(
        tmp_path,
        clock,
        transports,
        stores=stores,
        spooler={"preprocessors": []},
        sender_routes={"vip@localhost": "mine"},
    ) as h:
        async with h.spooler.events.subscribe() as events:
            vip = replace(await draft(h, "busy@localhost"), sender="vip@localhost")
            result = await h.daemon.submitter.submit_new("local", vip)
            assert (result.queued, result.handled) == (True, 1)
            with anyio.fail_after(10):
                event = await events.receive()
        assert (event["type"], event["id"]) == ("deferred", result.message_id)
        (detail,) = event["details"]
        assert (detail["recipient"], detail["transport"]) == ("busy@localhost", "mine")
        other = await h.daemon.submitter.submit_new("local", await draft(h, "alice@localhost"))
        assert (other.queued, other.handled) == (True, 0)  # me@localhost: not the coupled transport's
        await h.finished(other.message_id)
        assert h.transport("remote").calls == [(other.message_id, ["alice@localhost"])]
        assert h.transport("mine").calls == [(result.message_id, ["busy@localhost"])]


async def test_oldest_first(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"remote": {"provider": "test-scripted"}}
    async with spooler(tmp_path, clock, transports, spooler={"max_in_flight": 1}) as h:
        remote = h.transport("remote")
        remote.gate = anyio.Event()  # hold the first attempt until all are queued
        ids = []
        for n in range(4):
            ids.append(await h.submit(f"r{n}@remote.test"))
            clock.advance(1)
        remote.gate.set()
        await h.finished(ids[-1])
        assert [mid for mid, _ in remote.calls] == ids


async def test_per_transport_concurrency_is_bounded(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"remote": {"provider": "test-scripted", "concurrency": 3}}
    async with spooler(tmp_path, clock, transports, spooler={"max_in_flight": 20}) as h:
        remote = h.transport("remote")
        remote.gate = anyio.Event()  # every send waits: all twelve press on the limit of three
        ids = [await h.submit(f"r{n}@d{n}.test") for n in range(12)]
        with anyio.fail_after(10):
            await remote.until_concurrent(3)
        remote.gate.set()
        for mid in ids:
            await h.finished(mid)
        assert h.transport("remote").max_concurrent == 3


async def test_a_message_in_flight_is_never_attempted_twice(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"remote": {"provider": "test-scripted"}}
    async with spooler(tmp_path, clock, transports) as h:
        remote = h.transport("remote")
        remote.gate = anyio.Event()
        mid = await h.submit("a@remote.test")
        with anyio.fail_after(10):
            await remote.entered.wait()  # the scheduler's attempt is in the transport
        # starting it again (what a flush resuming after a wait for capacity did) joins the running attempt
        again = h.spooler._start("local", h.store, mid, force=True)
        assert again is h.spooler._start("local", h.store, mid, force=False)
        assert h.spooler.in_flight == 1
        # a flush (or a second dispatch) for the same message joins the running attempt
        async with anyio.create_task_group() as tg:
            tg.start_soon(h.spooler.flush)
            tg.start_soon(h.spooler.flush)
            await anyio.lowlevel.checkpoint()
            remote.gate.set()
        await h.finished(mid)
        assert remote.calls == [(mid, ["a@remote.test"])]


async def test_a_flush_in_a_daemon_with_workers_goes_past_its_small_share(
    tmp_path: Path, clock: FakeClock
) -> None:
    """With ``daemon_in_flight = 2`` the daemon delivers 2 at once itself, but it alone runs a flush (a
    worker claims only what is due): a flush may attempt an equal share, max_in_flight / N."""
    transports = {"remote": {"provider": "test-scripted"}}
    async with spooler(
        tmp_path, clock, transports, spooler={"workers": 2, "max_in_flight": 8, "daemon_in_flight": 2}
    ) as h:
        assert (h.spooler.max_in_flight, h.spooler.flush_in_flight) == (2, 4)
        remote = h.transport("remote")
        remote.gate = anyio.Event()  # every send waits
        ids = [await h.submit(f"r{n}@d{n}.test") for n in range(6)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(h.spooler.flush)
            with anyio.fail_after(10):
                await remote.until_concurrent(4)
            remote.gate.set()
        for mid in ids:
            await h.finished(mid)
        assert remote.max_concurrent == 4

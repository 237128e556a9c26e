"""The spooler engine end to end: real SQLite stores, the loopback transport and scripted test transports
loaded through the entry-point registry, and a clock the tests move by hand (no real waiting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from spoolerd.delivery.reports import REPORTS
from spoolerd.errors import StoreUnavailable, UnableToAbort
from spoolerd.events import NewMail
from spoolerd.message import FolderRole, InboundMessage, MessageFlag, RecipientState, SubmitFlag
from tests.conftest import FakeClock
from tests.engine.harness import CONTENT, outlive_the_lease, parse, spooler

SCRIPTED = "test-scripted"


def scripted(**settings: object) -> dict[str, object]:
    return {"provider": SCRIPTED, **settings}


# ---------------------------------------------------------------------- loopback, finishing


async def test_loopback_files_a_copy_and_the_original_goes_to_sent_items(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with spooler(tmp_path, clock) as h:
        mid = await h.submit("alice@localhost", "bob@LOCALHOST", message_class="")
        await h.finished(mid)
        (copy,) = await h.folder(FolderRole.INBOX)  # two local recipients in one store: one copy
        (sent,) = await h.folder(FolderRole.SENT)
        assert sent.id == mid and not sent.queued and MessageFlag.UNSENT not in sent.flags
        assert [(r.state, r.transport, r.responsibility) for r in sent.recipients] == [
            (RecipientState.DELIVERED, "loopback", True)
        ] * 2
        # the headers preprocessor added what a submission lacked; the rest is byte-identical
        assert copy.content == sent.content and sent.content.endswith(CONTENT)
        headers = parse(sent.content)
        assert headers["Date"] and headers["Message-ID"].endswith("@localhost>")
        assert copy.message_class == "IPM.Note" and sent.message_class == "IPM"
        assert h.spooler.counters.delivered == 2


async def test_delete_after_submit_and_neither(tmp_path: Path, clock: FakeClock) -> None:
    async with spooler(tmp_path, clock) as h:
        gone = await h.submit("a@localhost", delete_after_submit=True)
        kept = await h.submit("a@localhost", sentmail=False)
        await h.finished(gone)
        await h.finished(kept)
        assert [m.id for m in await h.folder(FolderRole.OUTBOX)] == [kept]
        assert await h.folder(FolderRole.SENT) == []


async def test_loopback_delivers_between_stores(tmp_path: Path, clock: FakeClock) -> None:
    stores = {
        "local": {"provider": "sqlite", "path": "local.db", "addresses": ["me@localhost"]},
        "team": {"provider": "sqlite", "path": "team.db", "addresses": ["@team.test"]},
    }
    async with spooler(tmp_path, clock, stores=stores) as h:
        async with h.daemon.stores["team"].subscribe() as events:
            mid = await h.submit("anyone@team.test")
            with anyio.fail_after(10):
                event = await events.receive()
                while not isinstance(event, NewMail):  # a queue change (the watcher's) may come first
                    event = await events.receive()
        assert event.store == "team"
        await h.finished(mid)
        (copy,) = await h.folder(FolderRole.INBOX, store="team")
        assert copy.content.endswith(CONTENT)


# ---------------------------------------------------------------------- routing


async def test_not_me_falls_through_and_unroutable_recipients_fail(tmp_path: Path, clock: FakeClock) -> None:
    transports = {
        "partners": scripted(accept_domains=["partner.test"]),
        "loopback": {"provider": "loopback"},
    }
    async with spooler(tmp_path, clock, transports) as h:
        mid = await h.submit("p@partner.test", "me@localhost", "x@nowhere.test")
        await h.finished(mid)
        sent = await h.message(mid)
        by_address = {r.address: r for r in sent.recipients}
        assert by_address["p@partner.test"].transport == "partners"
        assert by_address["me@localhost"].transport == "loopback"
        lost = by_address["x@nowhere.test"]
        assert (lost.state, lost.last_status) == (RecipientState.FAILED, "5.4.4")
        assert "declined by loopback, partners" in (lost.last_text or "")
        offered = sorted(a for _mid, addresses in h.transport("partners").calls for a in addresses)
        assert offered == ["me@localhost", "p@partner.test", "x@nowhere.test"]  # first chance to each


async def test_an_address_type_no_transport_serves_fails_at_once(tmp_path: Path, clock: FakeClock) -> None:
    async with spooler(tmp_path, clock) as h:
        outbox = await h.store.folder(FolderRole.OUTBOX)
        from spoolerd.message import Draft, NewRecipient

        mid = await h.store.create_message(
            outbox.id, Draft(CONTENT, [NewRecipient("/o=x/cn=y", address_type="EX")], sender="me@localhost")
        )
        await h.store.submit(mid)
        await h.finished(mid)
        (r,) = (await h.message(mid)).recipients
        assert (r.state, r.last_status) == (RecipientState.FAILED, "5.4.4")
        assert "no transport serves address type 'EX'" in (r.last_text or "")


# ---------------------------------------------------------------------- reports


async def test_one_ndr_per_message_with_status_and_diagnostic(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"remote": scripted(perm_fail=["bob@remote.test", "carol@remote.test"])}
    async with spooler(tmp_path, clock, transports) as h:
        mid = await h.submit("ok@remote.test", "bob@remote.test", "carol@remote.test", subject="hi")
        await h.finished(mid)
        (ndr,) = await h.folder(FolderRole.INBOX)
        assert ndr.message_class == "REPORT.IPM.Note.NDR"
        report = parse(ndr.content)
        assert report.get_content_type() == "multipart/report"
        assert report.get_param("report-type") == "delivery-status"
        assert report["To"] == "<me@localhost>"
        _text, status, original = report.get_payload()  # type: ignore[misc]
        blocks = status.get_payload()[1:]
        assert [(b["Final-Recipient"], b["Action"], b["Status"]) for b in blocks] == [
            ("rfc822; bob@remote.test", "failed", "5.1.1"),
            ("rfc822; carol@remote.test", "failed", "5.1.1"),
        ]
        assert blocks[0]["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@remote.test>: no such user"
        assert original.get_content_type() == "message/rfc822"
        assert (await h.message(mid)).content in ndr.content  # the original, byte for byte


async def test_no_report_about_a_report_nor_to_the_null_sender(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"remote": scripted(perm_fail=["bob@remote.test"])}
    async with spooler(tmp_path, clock, transports) as h:
        a = await h.submit("bob@remote.test", message_class="REPORT.IPM.Note.NDR")
        b = await h.submit("bob@remote.test", sender="")
        c = await h.submit("bob@remote.test", ndr_requested=False)
        for mid in (a, b, c):
            await h.finished(mid)
        assert await h.folder(FolderRole.INBOX) == []
        assert h.spooler.counters.failed == 3


async def test_delivery_report_only_when_requested(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"remote": scripted()}
    async with spooler(tmp_path, clock, transports) as h:
        plain = await h.submit("a@remote.test")
        asked = await h.submit("a@remote.test", dr_requested=True)
        await h.finished(plain)
        await h.finished(asked)
        (dr,) = await h.folder(FolderRole.INBOX)
        assert dr.message_class == "REPORT.IPM.Note.DR"
        status = parse(dr.content).get_payload()[1]  # type: ignore[index]
        assert status.get_payload()[1]["Action"] == "delivered"


# ---------------------------------------------------------------------- retries


async def test_temporary_failures_back_off_like_postfix(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"remote": scripted(temp_fail=["slow@remote.test"], temp_fail_times=3)}
    async with spooler(tmp_path, clock, transports) as h:
        t0 = clock.now
        mid = await h.submit("slow@remote.test")
        remote = h.transport("remote")
        expected_waits = [300, 600, 1200]
        for attempt, wait in enumerate(expected_waits, start=1):
            result = await h.spooler.flush(message_ids=[mid], due_only=True)
            assert (result.deferred, len(remote.calls)) == (1, attempt)
            (r,) = (await h.message(mid)).recipients
            assert (r.state, r.attempts, r.next_attempt) == (
                RecipientState.DEFERRED,
                attempt,
                clock.now + wait,
            )
            assert (r.last_code, r.last_status) == (451, "4.3.0")
            clock.advance(wait - 1)
            assert (await h.spooler.flush(message_ids=[mid], due_only=True)).messages == 0  # not due yet
            assert len(remote.calls) == attempt
            clock.advance(1)
        result = await h.spooler.flush(message_ids=[mid], due_only=True)
        assert result.sent == 1 and clock.now - t0 == sum(expected_waits)
        await h.finished(mid)


async def test_a_transport_retry_after_hint_is_honoured(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"remote": scripted(temp_fail=["x@remote.test"], retry_after=1800)}
    async with spooler(tmp_path, clock, transports) as h:
        mid = await h.submit("x@remote.test")
        await h.spooler.flush(message_ids=[mid])
        (r,) = (await h.message(mid)).recipients
        assert r.next_attempt == clock.now + 1800


async def test_a_flush_ignores_backoff(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"remote": scripted(temp_fail=["x@remote.test"], temp_fail_times=2)}
    async with spooler(tmp_path, clock, transports) as h:
        mid = await h.submit("x@remote.test")
        assert (await h.spooler.flush(message_ids=[mid])).deferred == 1
        assert (await h.spooler.flush(message_ids=[mid], due_only=True)).messages == 0  # not due
        assert (await h.spooler.flush(message_ids=[mid])).deferred == 1  # a plain flush tries it
        assert (await h.spooler.flush(force=True, message_ids=[mid])).sent == 1


async def test_a_flush_of_one_transport_tries_only_what_waits_on_it(tmp_path: Path, clock: FakeClock) -> None:
    """FlushQueues with a target transport (seed 000): two transports serve one address type, each
    its own domain (the other answers NOT_ME); flushing one retries the message it deferred and leaves
    the other's alone, even though both serve the address type."""
    transports = {
        "one": scripted(accept_domains=["one.test"], temp_fail=["x@one.test"]),
        "two": scripted(accept_domains=["two.test"], temp_fail=["y@two.test"]),
    }
    async with spooler(tmp_path, clock, transports) as h:
        first, second = await h.submit("x@one.test"), await h.submit("y@two.test")
        assert (await h.spooler.flush(message_ids=[first, second])).deferred == 2
        one, two = h.transport("one"), h.transport("two")

        def tries(mid: str) -> int:  # sends of the message (the other transport's NOT_ME included)
            return sum(call[0] == mid for call in [*one.calls, *two.calls])

        before = tries(first), tries(second)
        result = await h.spooler.flush(transport="two")
        assert (result.messages, result.deferred) == (1, 1)
        assert (tries(first), tries(second)) == (before[0], before[1] + 2)  # one: NOT_ME, then two
        assert (await h.spooler.flush(transport="one")).messages == 1
        assert tries(first) == before[0] + 1


async def test_give_up_after_the_queue_lifetime_with_4_4_7(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"remote": scripted(temp_fail=["x@remote.test"])}
    async with spooler(tmp_path, clock, transports) as h:
        mid = await h.submit("x@remote.test")
        await h.spooler.flush(message_ids=[mid])
        clock.advance(5 * 86400)
        result = await h.spooler.flush(message_ids=[mid])
        assert result.failed == 1
        await h.finished(mid)
        (r,) = (await h.message(mid)).recipients
        assert (r.state, r.last_status) == (RecipientState.FAILED, "4.4.7")
        assert "delivery time expired" in (r.last_text or "")
        (ndr,) = await h.folder(FolderRole.INBOX)
        block = parse(ndr.content).get_payload()[1].get_payload()[1]  # type: ignore[index]
        assert (block["Status"], block["Action"]) == ("4.4.7", "failed")


async def test_a_dead_destination_is_not_hammered(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"remote": scripted(connection_down=True)}
    async with spooler(tmp_path, clock, transports) as h:
        first = await h.submit("a@down.test")
        await h.spooler.flush(message_ids=[first])
        remote = h.transport("remote")
        assert len(remote.calls) == 1
        second = await h.submit("b@down.test")
        other = await h.submit("c@up.test")
        await h.spooler.flush(message_ids=[second, other], due_only=True)
        assert [call[1] for call in remote.calls] == [["a@down.test"], ["c@up.test"]]
        (r,) = (await h.message(second)).recipients
        assert (r.state, r.attempts) == (RecipientState.PENDING, 0)  # not tried: no attempt counted
        (entry,) = [e async for e in h.store.outgoing_queue() if e.id == second]
        assert entry.due_at == clock.now + 300  # it waits for the destination to come due again
        await h.spooler.flush(message_ids=[second])  # a flush passes over the mark it finds
        assert remote.calls[-1][1] == ["b@down.test"]


async def test_deferred_send_time_is_honoured(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"remote": scripted()}
    async with spooler(tmp_path, clock, transports) as h:
        mid = await h.submit("a@remote.test", not_before=clock.now + 600)
        assert (await h.spooler.flush()).messages == 0
        assert h.transport("remote").calls == []
        clock.advance(600)
        assert (await h.spooler.flush()).sent == 1
        assert h.transport("remote").calls == [(mid, ["a@remote.test"])]


# ---------------------------------------------------------------------- concurrency and failures


async def test_abort_works_until_the_message_is_locked(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"remote": scripted()}
    async with spooler(tmp_path, clock, transports, spooler={"max_in_flight": 1}) as h:
        remote = h.transport("remote")
        remote.gate = anyio.Event()
        busy = await h.submit("a@remote.test")
        waiting = await h.submit("b@remote.test")
        with anyio.fail_after(10):
            await remote.entered.wait()  # the first message reached the transport: it is locked
        with pytest.raises(UnableToAbort):
            await h.store.abort_submit(busy)
        await h.store.abort_submit(waiting)
        remote.gate.set()
        await h.finished(busy)
        assert [c[1] for c in remote.calls] == [["a@remote.test"]]


async def test_a_slow_transport_does_not_hold_up_other_mail(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"slow": scripted(accept_domains=["slow.test"]), "loopback": {"provider": "loopback"}}
    async with spooler(tmp_path, clock, transports) as h:
        slow = h.transport("slow")
        slow.gate = anyio.Event()
        stuck = await h.submit("x@slow.test")
        local = await h.submit("me@localhost")
        await h.finished(local)  # delivered while the older message still waits on its transport
        assert stuck in {e.id async for e in h.store.outgoing_queue()}
        slow.gate.set()
        await h.finished(stuck)


async def test_a_crashing_transport_defers_and_the_spooler_lives_on(tmp_path: Path, clock: FakeClock) -> None:
    transports = {
        "broken": scripted(crash=True, accept_domains=["broken.test"]),
        "loopback": {"provider": "loopback"},
    }
    async with spooler(tmp_path, clock, transports) as h:
        bad = await h.submit("x@broken.test")
        result = await h.spooler.flush(message_ids=[bad])
        assert result.deferred == 1
        (r,) = (await h.message(bad)).recipients
        assert (r.state, r.last_status) == (RecipientState.DEFERRED, "4.3.0")
        assert "RuntimeError: scripted crash" in (r.last_text or "")
        good = await h.submit("me@localhost")
        await h.finished(good)


# ---------------------------------------------------------------------- preprocessing and expansion


async def test_preprocessors_run_in_order_and_only_where_their_transport_is_used(
    tmp_path: Path, clock: FakeClock
) -> None:
    transports = {
        "x400": {"provider": "test-tagger", "address_types": ["X400"]},
        "preonly": {"provider": "test-tagger", "preprocess_types": ["SMTP"]},
        "loopback": {"provider": "loopback"},
    }
    pre = {"preprocessors": ["test-stamp", "headers"]}
    async with spooler(tmp_path, clock, transports, spooler=pre) as h:
        smtp_only = await h.submit("me@localhost")
        await h.finished(smtp_only)
        content = (await h.message(smtp_only)).content
        tags = [line for line in content.split(b"\r\n") if line.startswith(b"X-Preprocessed-By")]
        # each preprocessor prepends its line: the last to run is on top
        assert tags == [b"X-Preprocessed-By: transport:preonly", b"X-Preprocessed-By: entry-point:test-stamp"]
        assert SubmitFlag.PREPROCESS not in (await h.message(smtp_only)).submit_flags
        x400 = await h.submit("me@localhost", ("/c=xx/o=org", "X400"), content=b"Subject: both\r\n\r\nx\r\n")
        await h.finished(x400)
        content = (await h.message(x400)).content
        tags = [line for line in content.split(b"\r\n") if line.startswith(b"X-Preprocessed-By")]
        assert tags == [
            b"X-Preprocessed-By: transport:preonly",
            b"X-Preprocessed-By: transport:x400",  # its transport handles the X400 recipient this time
            b"X-Preprocessed-By: entry-point:test-stamp",
        ]


async def test_distribution_lists_are_expanded_and_duplicates_dropped(
    tmp_path: Path, clock: FakeClock
) -> None:
    lists = {
        "team@localhost": ["a@localhost", "b@localhost", "crew@localhost"],
        "crew@localhost": ["b@localhost", "c@localhost"],
    }
    async with spooler(tmp_path, clock, lists=lists) as h:
        mid = await h.submit("team@localhost", "A@localhost")
        await h.finished(mid)
        assert [r.address for r in (await h.message(mid)).recipients] == [
            "a@localhost",
            "b@localhost",
            "c@localhost",
        ]


# ---------------------------------------------------------------------- inbound


async def test_downloaded_mail_is_committed_before_it_is_acknowledged(
    tmp_path: Path, clock: FakeClock
) -> None:
    transports = {"feed": {"provider": "test-inbound"}, "loopback": {"provider": "loopback"}}
    async with spooler(tmp_path, clock, transports) as h:
        feed = h.transport("feed")
        async with h.store.subscribe() as events:
            feed.inject(InboundMessage(b"Subject: in\r\n\r\nbody\r\n", sender="x@remote.test"))
            with anyio.fail_after(10):
                event = await events.receive()
        assert isinstance(event, NewMail) and event.message_class == "IPM.Note"
        (stored,) = await h.folder(FolderRole.INBOX)
        assert stored.content == b"Subject: in\r\n\r\nbody\r\n"
        with anyio.fail_after(10):
            await feed.acked.wait()
        assert feed.acknowledged == [stored.content]
        assert h.spooler.counters.received == 1


async def test_a_download_loop_that_ends_is_not_started_again(tmp_path: Path, clock: FakeClock) -> None:
    """receive() returning means nothing more to download: no timer, no second call."""
    transports = {"feed": {"provider": "test-inbound"}, "loopback": {"provider": "loopback"}}
    async with spooler(tmp_path, clock, transports) as h:
        feed = h.transport("feed")
        feed.inject(InboundMessage(b"Subject: last\r\n\r\nbody\r\n"))
        feed.end_receive()
        with anyio.fail_after(10):
            await feed.acked.wait()
        await anyio.sleep(1.5)  # a window past the old one-second pause, not a wait for state
        assert feed.receive_calls == 1
        assert h.spooler.counters.received == 1


# ---------------------------------------------------------------------- idle


async def test_an_idle_spooler_does_not_wake_up(tmp_path: Path) -> None:
    import time

    async with spooler(tmp_path, FakeClock(time.time())) as h:
        mid = await h.submit("me@localhost")
        await h.finished(mid)
        with anyio.fail_after(10):
            await h.spooler.parked.wait()
        before = h.spooler.loop_iterations
        await anyio.sleep(1.0)  # a measurement window, not a wait for state
        assert h.spooler.loop_iterations == before
        assert h.spooler.parked.is_set()


async def test_the_lease_renewer_sleeps_once_the_last_attempt_is_over(tmp_path: Path) -> None:
    """No stray timer a third of the lease after the last attempt: an idle daemon does not wake."""
    import time

    async with spooler(tmp_path, FakeClock(time.time()), spooler={"lease": 6}) as h:
        mid = await h.submit("me@localhost")
        await h.finished(mid)
        await anyio.sleep(2.5)  # a measurement window past the 2 s renewal timer, not a wait for state
        assert h.spooler.dispatcher.leases.renewal_timers == 0


async def test_delay_warning_is_off_by_default(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"remote": scripted(temp_fail=["x@remote.test"])}
    async with spooler(tmp_path, clock, transports) as h:
        mid = await h.submit("x@remote.test")
        for _ in range(4):
            await h.spooler.flush(force=True, message_ids=[mid])
            clock.advance(86400)
        assert await h.folder(FolderRole.INBOX) == []


async def test_one_delay_warning_once_the_message_is_old_enough(tmp_path: Path, clock: FakeClock) -> None:
    transports = {"remote": scripted(temp_fail=["x@remote.test"], temp_fail_times=5)}
    async with spooler(tmp_path, clock, transports, spooler={"delay_warning_after": 4 * 3600}) as h:
        mid = await h.submit("x@remote.test", "ok@remote.test")
        await h.spooler.flush(message_ids=[mid])  # ok@ delivered, x@ deferred: too young to warn
        assert await h.folder(FolderRole.INBOX) == []
        clock.advance(4 * 3600)
        await h.spooler.flush(message_ids=[mid])
        clock.advance(3600)
        await h.spooler.flush(message_ids=[mid])
        (warning,) = await h.folder(FolderRole.INBOX)  # once, however many deferrals follow
        assert warning.message_class == "REPORT.IPM.Note.DELAYED"
        report = parse(warning.content)
        (block,) = report.get_payload()[1].get_payload()[1:]  # type: ignore[index]
        assert (block["Final-Recipient"], block["Action"], block["Status"]) == (
            "rfc822; x@remote.test", "delayed", "4.3.0",
        )  # fmt: skip
        assert report.get_payload()[2].get_content_type() == "text/rfc822-headers"  # type: ignore[index]
        assert (await h.message(mid)).delay_reported


async def test_the_lease_is_renewed_while_a_send_takes_long(tmp_path: Path, clock: FakeClock) -> None:
    from dataclasses import replace

    from spoolerd.errors import NoAccess

    transports = {"remote": scripted()}
    async with spooler(tmp_path, clock, transports) as h:
        dispatcher = h.spooler.dispatcher
        dispatcher.settings = replace(dispatcher.settings, lease=1.5)  # renewed every 0.5 s
        remote = h.transport("remote")
        remote.gate = anyio.Event()
        mid = await h.submit("a@remote.test")
        with anyio.fail_after(10):
            await remote.entered.wait()
        await outlive_the_lease(clock, 1.5)  # store time passes the first lease's expiry ...
        with pytest.raises(NoAccess):  # ... yet it is still held: the spooler renewed it
            await h.store.lock(mid, "intruder", 60)
        remote.gate.set()
        await h.finished(mid)


async def test_an_ndr_filed_before_a_crash_is_not_filed_again(tmp_path: Path, clock: FakeClock) -> None:
    """The NDR is committed, then the attempt dies before the message is finished: the repeat files no
    second NDR (the store remembers, with the NDR itself, that it was filed), and forgets it at the end."""
    transports = {"remote": scripted(perm_fail=["bob@remote.test"])}
    async with spooler(tmp_path, clock, transports) as h:
        store = h.store
        real_finish = store.finish
        calls = 0

        async def finish_fails_once(*args: Any, **kwargs: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise StoreUnavailable("disk gone, as if killed here")
            await real_finish(*args, **kwargs)

        store.finish = finish_fails_once  # type: ignore[method-assign]
        mid = await h.submit("bob@remote.test")
        with anyio.fail_after(10):
            while calls < 1:
                await h.spooler.flush(force=True)
        clock.advance(3600)
        await h.spooler.flush(force=True)
        await h.finished(mid)
        assert calls == 2
        (ndr,) = await h.folder(FolderRole.INBOX)
        assert ndr.message_class == "REPORT.IPM.Note.NDR"
        assert await store.transport_state(REPORTS) == {}


async def test_a_flush_during_shutdown_returns(tmp_path: Path, clock: FakeClock) -> None:
    """Once shutdown has begun, nothing new starts (its workers may be gone): a flush that asks for an
    attempt then is answered at once instead of waiting for a worker that will never come."""
    async with spooler(tmp_path, clock, {"remote": scripted()}) as h:
        await h.spooler.shutdown(deadline=0)
        mid = await h.submit("someone@remote.test")  # queued, and nobody left to take it
        with anyio.fail_after(5):
            result = await h.spooler.flush(force=True, message_ids=[mid])
        assert result.sent == 0 and mid not in {k[1] for k in h.spooler._in_flight}

"""``flush`` does what ``postqueue -f`` does (#12 part 5), against a real relay (aiosmtpd) that is down,
then back: a plain flush tries every queued message now, deferred ones not yet due and those behind a
destination marked down included, and says per deferred recipient why; on asyncio and uvloop."""

from __future__ import annotations

from pathlib import Path

from spoolerd.message import RecipientState
from tests.conftest import FakeClock
from tests.engine.harness import spooler
from tests.peers.ports import free_port

from .conftest import ServerFactory
from .test_spooler_smtp import relay

CONTENT = b"From: me@localhost\r\nTo: a@example.net\r\nSubject: after the outage\r\n\r\nbody\r\n"


async def test_after_an_outage_a_plain_flush_sends_everything(
    tmp_path: Path, clock: FakeClock, smtp_server: ServerFactory
) -> None:
    port = free_port()  # the relay's: nothing listens there yet, connections are refused
    async with spooler(tmp_path, clock, {"relay": relay(port)}) as h:
        ids = {await h.submit(f"user{n}@example.net", content=CONTENT) for n in range(3)}
        down = await h.spooler.flush()
        assert (down.sent, down.deferred) == (0, 3)
        assert {d.message_id for d in down.deferrals} == ids
        key = f"relay:{h.transport('relay').destination((await h.message(next(iter(ids)))).recipients[0])}"
        assert h.spooler.dispatcher.destinations.dead_until(key, clock()) is not None  # marked down
        clock.advance(1)
        assert (await h.spooler.flush(due_only=True)).messages == 0  # nothing is due: backoff, mark
        handler = smtp_server(port=port).handler  # the relay is back
        result = await h.spooler.flush()  # plain: no force
        assert (result.sent, result.deferred, result.failed, result.messages) == (3, 0, 0, 3), result
        assert result.deferrals == []
        assert sorted(r for got in handler.received for r in got.recipients) == [
            f"user{n}@example.net" for n in range(3)
        ]
        assert [e async for e in h.store.outgoing_queue()] == []


async def test_a_flush_while_the_relay_is_still_down_says_why_per_message(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = {"spooler": {"destination_concurrency": 1}}  # one connection at a time: a fixed order
    async with spooler(tmp_path, clock, {"relay": relay(free_port())}, **settings) as h:
        ids = [await h.submit(f"user{n}@example.net", content=CONTENT) for n in range(3)]
        await h.spooler.flush()
        clock.advance(1)
        result = await h.spooler.flush()
        assert (result.sent, result.deferred) == (0, 3)
        why = {d.message_id: d.recipient for d in result.deferrals}
        assert set(why) == set(ids)
        assert {why[mid].address for mid in ids} == {f"user{n}@example.net" for n in range(3)}
        # the first attempt finds the relay down again; the rest of this flush leaves it alone
        connects = [d for d in why.values() if "cannot connect" in (d.update.text or "")]
        spared = [d for d in why.values() if "is not responding" in (d.update.text or "")]
        assert (len(connects), len(spared)) == (1, 2)
        assert all(d.update.status == "4.4.1" for d in why.values())
        clock.advance(1)
        forced = await h.spooler.flush(force=True)  # FLUSH_FORCE: every message makes its own attempt
        assert sum("cannot connect" in (d.recipient.update.text or "") for d in forced.deferrals) == 3
        for mid in ids:  # the one tried counts an attempt; the others were not charged one
            (r,) = (await h.message(mid)).recipients
            assert r.state in (RecipientState.DEFERRED, RecipientState.PENDING)

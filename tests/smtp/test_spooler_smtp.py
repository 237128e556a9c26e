"""The SMTP transport inside the spooler: loaded through its entry point, outcomes recorded per recipient,
an NDR for the refused one, and a dead relay deferring without a crash."""

from __future__ import annotations

from pathlib import Path

from spoolerd.message import FolderRole, RecipientState
from tests.conftest import FakeClock
from tests.engine.harness import parse, spooler
from tests.peers.ports import free_port

from .conftest import ServerFactory

CONTENT = b"From: me@localhost\r\nTo: a@example.net\r\nBcc: secret@example.net\r\nSubject: hi\r\n\r\nbody\r\n"


def relay(port: int, **settings: object) -> dict[str, object]:
    return {
        "provider": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "helo": "spool.test",
        **settings,
    }


async def test_spooler_relays_and_records_each_recipient(
    tmp_path: Path, clock: FakeClock, smtp_server: ServerFactory
) -> None:
    server = smtp_server()
    async with spooler(tmp_path, clock, {"relay": relay(server.port)}) as h:
        mid = await h.submit(
            "a@example.net",
            "r550-gone@example.net",
            "r451-later@example.net",
            "secret@example.net",
            content=CONTENT,
        )
        assert (await h.spooler.flush(force=True)).deferred == 1  # the 4xx recipient
        msg = await h.message(mid)
        states = {r.address: (r.state, r.last_code, r.last_status) for r in msg.recipients}
        assert states == {
            "a@example.net": (RecipientState.DELIVERED, 250, "2.0.0"),
            "r550-gone@example.net": (RecipientState.FAILED, 550, "5.1.1"),
            "r451-later@example.net": (RecipientState.DEFERRED, 451, "4.1.1"),
            "secret@example.net": (RecipientState.DELIVERED, 250, "2.0.0"),
        }
        (got,) = server.handler.received
        assert got.sender == "me@localhost"
        assert sorted(got.recipients) == ["a@example.net", "secret@example.net"]
        assert b"Bcc" not in got.content and b"secret" not in got.content
        assert got.content.endswith(CONTENT.replace(b"Bcc: secret@example.net\r\n", b""))


async def test_refused_recipient_gets_an_ndr_and_the_message_is_filed(
    tmp_path: Path, clock: FakeClock, smtp_server: ServerFactory
) -> None:
    server = smtp_server()
    async with spooler(tmp_path, clock, {"relay": relay(server.port)}) as h:
        mid = await h.submit("a@example.net", "r550-gone@example.net", content=CONTENT)
        await h.finished(mid)
        (sent,) = await h.folder(FolderRole.SENT)
        assert sent.id == mid
        (ndr,) = await h.folder(FolderRole.INBOX)
        report = parse(ndr.content)
        assert report.get_content_type() == "multipart/report"
        assert b"r550-gone@example.net" in ndr.content and b"5.1.1" in ndr.content
        assert len(server.handler.received) == 1


async def test_dead_relay_defers_and_is_left_alone(tmp_path: Path, clock: FakeClock) -> None:
    async with spooler(tmp_path, clock, {"relay": relay(free_port())}) as h:
        first = await h.submit("a@example.net", content=CONTENT)
        second = await h.submit("b@example.net", content=CONTENT)
        result = await h.spooler.flush()
        assert result.deferred == 2 and result.sent == 0
        recipients = [(await h.message(mid)).recipients[0] for mid in (first, second)]
        tried = [r for r in recipients if r.attempts]
        assert tried, "the relay was tried at least once"
        for r in tried:
            assert (r.state, r.last_code, r.last_status) == (RecipientState.DEFERRED, None, "4.4.1")
            assert "cannot connect" in (r.last_text or "")
        # a message not tried (the relay was known dead by then) is left pending, not charged an attempt
        assert all(r.state is RecipientState.PENDING for r in recipients if not r.attempts)
        queued = {e.id async for e in h.store.outgoing_queue()}
        assert queued == {first, second}

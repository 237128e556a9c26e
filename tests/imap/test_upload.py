"""Upload by APPEND against a real Dovecot: outcomes per recipient, a missing mailbox created (or not),
a dead server deferring, and a copy of mail other transports sent filed once in the server's Sent."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import anyio
import pytest

from spoolerd.envelope import without_bcc
from spoolerd.message import FolderRole, RecipientState
from spoolerd.transport import OutcomeKind
from tests.conftest import FakeClock
from tests.engine.harness import spooler
from tests.peers.ports import free_port

from .conftest import Account

CONTENT = (
    b"From: me@localhost\r\nTo: archive@archive.test\r\nBcc: hidden@archive.test\r\n"
    b"Message-ID: <upload-1@localhost>\r\nSubject: keep this\r\n\r\nbody\r\n.\r\n"
)


def uploader(account: Account, **settings: object) -> dict[str, object]:
    return account.settings(
        mailboxes=[],
        upload_mailbox="Archive",
        address_types=["IMAP"],
        addresses=["@archive.test"],
        **settings,
    )


async def test_append_delivers_each_recipient_it_serves(
    tmp_path: Path, clock: FakeClock, account: Account
) -> None:
    transports = {"loopback": {"provider": "loopback"}, "archive": uploader(account)}
    async with spooler(tmp_path, clock, transports) as h:
        mid = await h.submit(
            "archive@archive.test",
            ("shared-box", "IMAP"),
            "me@localhost",
            "hidden@archive.test",
            content=CONTENT,
        )
        await h.finished(mid)
        states = {r.address: (r.state, r.transport, r.last_text) for r in (await h.message(mid)).recipients}
    assert states["me@localhost"][:2] == (RecipientState.DELIVERED, "loopback")
    for address in ("archive@archive.test", "shared-box", "hidden@archive.test"):
        state, transport, text = states[address]
        assert (state, transport) == (RecipientState.DELIVERED, "archive")
        assert text is not None and "appended to Archive" in text and "UID 1" in text
    async with account.client() as other:
        (stored,) = (await other.messages("Archive")).values()  # one copy for all, mailbox created
    assert stored[1].endswith(CONTENT.replace(b"Bcc: hidden@archive.test\r\n", b""))  # after Date added


async def test_a_bcc_behind_a_lone_cr_is_no_field_in_the_copy(
    tmp_path: Path, clock: FakeClock, account: Account
) -> None:
    """The copy goes up with CRLF line ends, as the smtp transport sends it: a lone CR in the header is
    a fold there, so no Bcc field starts behind it."""
    content = b"From: me@localhost\r\nSubject: hi\rBcc: evil@archive.test\r\n\r\nbody\r\n"
    async with spooler(tmp_path, clock, {"archive": uploader(account)}) as h:
        mid = await h.submit("archive@archive.test", content=content)
        await h.finished(mid)
    async with account.client() as other:
        (stored,) = (await other.messages("Archive")).values()
    assert stored[1].endswith(b"Subject: hi\r\n Bcc: evil@archive.test\r\n\r\nbody\r\n")


async def test_a_mailbox_that_may_not_be_created_fails_with_an_ndr(
    tmp_path: Path, clock: FakeClock, account: Account
) -> None:
    transports = {"loopback": {"provider": "loopback"}, "archive": uploader(account, create_mailboxes=False)}
    async with spooler(tmp_path, clock, transports) as h:
        mid = await h.submit("archive@archive.test", content=CONTENT)
        await h.finished(mid)
        (r,) = (await h.message(mid)).recipients
        assert (r.state, r.last_status) == (RecipientState.FAILED, "5.2.0")
        assert r.last_text is not None and "TRYCREATE" in r.last_text
        (ndr,) = await h.folder(FolderRole.INBOX)
        assert b"5.2.0" in ndr.content


async def test_a_dead_server_defers(tmp_path: Path, clock: FakeClock, account: Account) -> None:
    transports = {"archive": uploader(account, port=free_port(), connect_timeout=5)}
    async with spooler(tmp_path, clock, transports) as h:
        mid = await h.submit("archive@archive.test", content=CONTENT)
        result = await h.spooler.flush()
        assert result.deferred == 1
        (r,) = (await h.message(mid)).recipients
        assert r.state is RecipientState.DEFERRED and "could not connect" in (r.last_text or "")


@pytest.mark.parametrize("ending", [b"\r\n", b"\n"])
async def test_sent_copy_is_filed_once(
    tmp_path: Path, clock: FakeClock, account: Account, ending: bytes
) -> None:
    """Offered again, the copy already in Sent is found (its Message-ID and size) and not appended twice,
    for a message with LF line ends too: it goes up in CRLF, the size the server counts (found in review)."""
    transports = {
        "loopback": {"provider": "loopback"},
        "mail": account.settings(mailboxes=[], sent_copy=True),
    }
    async with spooler(tmp_path, clock, transports) as h:
        async with h.spooler.events.subscribe() as events:
            mid = await h.submit("friend@localhost", content=CONTENT.replace(b"\r\n", ending))
            # the spooler tells of the delivery once the attempt, sent copy included, is over
            with anyio.fail_after(10):
                while (await events.receive()).get("id") != mid:
                    pass
        async with account.client() as other:
            (copy,) = (await other.messages("Sent")).values()
        assert "\\Seen" in copy[0] and copy[1].endswith(CONTENT)  # as sent, Bcc and all, as a client keeps it
        transport = h.transport("mail")
        (sent,) = await h.folder(FolderRole.SENT)
        await transport.file_sent(sent, {"loopback"})  # offered again (a crash before it was noted)
        async with account.client() as other:
            assert len(await other.messages("Sent")) == 1
        assert transport.status()["counters"]["sent_copies"] == 1
        slot = h.spooler.dispatcher.slot("mail")
        assert slot is not None and not slot.downloads  # no mailboxes: the spooler runs no download loop


async def test_an_earlier_attempt_that_landed_is_not_appended_again(
    tmp_path: Path, clock: FakeClock, account: Account
) -> None:
    """A first APPEND whose answer was lost: the retry finds the Message-ID and appends nothing."""
    transports = {"archive": uploader(account)}
    async with spooler(tmp_path, clock, transports) as h:
        async with account.client() as other:
            await other.create("Archive")
        later = clock() + 3600  # the spooler leaves it alone: the test plays the retry itself
        mid = await h.submit("archive@archive.test", content=CONTENT, not_before=later)
        stored = await h.message(mid)
        async with account.client() as other:  # as if the first attempt had landed unanswered
            await other.append(without_bcc(stored.content), "Archive")
        (r,) = stored.recipients
        tried = dataclasses.replace(r, attempts=1)
        (outcome,) = await h.transport("archive").send(stored, [tried])
        assert outcome.kind is OutcomeKind.DELIVERED and "already in Archive" in outcome.diagnostic
        async with account.client() as other:
            assert len(await other.messages("Archive")) == 1


async def test_messages_of_two_stores_are_both_uploaded(
    tmp_path: Path, clock: FakeClock, account: Account
) -> None:
    """Two stores may number messages alike: one is not taken for the other."""
    stores = {
        "local": {"provider": "sqlite"},
        "other": {"provider": "sqlite", "path": str(tmp_path / "other.db")},
    }
    async with spooler(tmp_path, clock, {"archive": uploader(account)}, stores=stores) as h:
        first = await h.submit("archive@archive.test", content=CONTENT, store="local")
        second = await h.submit(
            "archive@archive.test", content=CONTENT.replace(b"body", b"other"), store="other"
        )
        assert first == second  # the case in point
        await h.finished(first, "local")
        await h.finished(second, "other")
    async with account.client() as other:
        assert len(await other.messages("Archive")) == 2


async def test_another_message_with_the_same_message_id_is_not_taken_for_it(
    tmp_path: Path, clock: FakeClock, account: Account
) -> None:
    async with spooler(tmp_path, clock, {"archive": uploader(account)}) as h:
        async with account.client() as other:
            await other.create("Archive")
            await other.append(CONTENT.replace(b"body", b"an older, longer body"), "Archive")
        mid = await h.submit("archive@archive.test", content=CONTENT, not_before=clock() + 3600)
        stored = await h.message(mid)
        tried = dataclasses.replace(stored.recipients[0], attempts=1)
        (outcome,) = await h.transport("archive").send(stored, [tried])
        assert outcome.kind is OutcomeKind.DELIVERED and "appended to Archive" in outcome.diagnostic
        async with account.client() as other:
            assert len(await other.messages("Archive")) == 2

"""Interop with a real Postfix: the spooler relays through the SMTP transport into a private Postfix
instance that delivers into Maildirs; what arrives is the message byte for byte (Postfix only prepends
its trace fields), with the envelope we gave it. Skipped only where Postfix cannot run, and never in CI
(.ci/run sets SPOOLERD_REQUIRE_PEERS)."""

from __future__ import annotations

import email
import email.policy
import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from spoolerd.dsn_params import Notify, Ret
from spoolerd.message import Draft, FolderRole, NewRecipient, RecipientState
from tests.conftest import FakeClock
from tests.engine.harness import spooler
from tests.peers.ports import free_port
from tests.peers.postfix import Postfix, available


@pytest.fixture(scope="module")
def postfix() -> Iterator[Postfix]:
    reason = available()
    if reason is not None:
        if os.environ.get("SPOOLERD_REQUIRE_PEERS"):
            pytest.fail(reason)
        pytest.skip(reason)
    instance = Postfix(
        free_port(), mailboxes=["alice", "bob", "carol"], settings={"message_size_limit": "200000"}
    )
    instance.start()
    yield instance
    instance.stop()


def relay(port: int) -> dict[str, object]:
    return {"provider": "smtp", "host": "127.0.0.1", "port": port, "tls": "none", "helo": "spool.test"}


def split(delivered: bytes) -> tuple[bytes, bytes]:
    """(Postfix's prepended trace fields, the rest), cut where our own first header field starts."""
    at = delivered.index(b"\nMessage-ID: ") + 1 if b"\nMessage-ID: " in delivered else 0
    return delivered[:at], delivered[at:]


async def test_postfix_receives_byte_identical_messages(
    tmp_path: Path, clock: FakeClock, postfix: Postfix
) -> None:
    body = b"".join(
        b".line %d with a leading dot and some text to make it longer\r\n" % i for i in range(2000)
    )
    content = (
        b"Message-ID: <interop-1@spool.test>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
        b"From: Me <me@localhost>\r\nTo: alice@test.local, bob@test.local\r\nBcc: carol@test.local\r\n"
        b"Subject: interop\r\n\r\n" + body + b".\r\n..\r\nend\r\n"
    )
    async with spooler(tmp_path, clock, {"relay": relay(postfix.port)}) as h:
        mid = await h.submit(
            "alice@test.local", "bob@test.local", "carol@test.local", "nobody@test.local", content=content
        )
        await h.spooler.flush(force=True)
        states = {r.address: (r.state, r.last_code, r.last_status) for r in (await h.message(mid)).recipients}
    assert states["nobody@test.local"] == (RecipientState.FAILED, 550, "5.1.1")
    for box in ("alice", "bob", "carol"):
        assert states[f"{box}@test.local"] == (RecipientState.DELIVERED, 250, "2.0.0")
        delivered = await anyio.to_thread.run_sync(postfix.wait_for_mail, box, 1)
        trace, ours = split(next(d for d in delivered if b"<interop-1@spool.test>" in d))
        assert trace.startswith(b"Return-Path: <me@localhost>\n")  # the envelope sender
        assert f"Delivered-To: {box}@test.local\n".encode() in trace  # the envelope recipient
        expected = content.replace(b"Bcc: carol@test.local\r\n", b"").replace(b"\r\n", b"\n")
        assert ours == expected
        assert b"carol" not in ours  # Bcc left no trace in what anyone received


async def test_postfix_8bit_and_utf8(tmp_path: Path, clock: FakeClock, postfix: Postfix) -> None:
    content = (
        "Message-ID: <interop-2@spool.test>\r\nFrom: J\u00f6rg <me@localhost>\r\nTo: alice@test.local\r\n"
        "Subject: gr\u00fc\u00dfe\r\n\r\nna\u00efve caf\u00e9 \u2014 8-bit body\r\n"
    ).encode()
    before = len(list(postfix.maildir("alice").iterdir()))
    async with spooler(tmp_path, clock, {"relay": relay(postfix.port)}) as h:
        mid = await h.submit("alice@test.local", content=content)
        await h.spooler.flush(force=True)
        (r,) = (await h.message(mid)).recipients
        assert r.state is RecipientState.DELIVERED, r.last_text
    delivered = await anyio.to_thread.run_sync(postfix.wait_for_mail, "alice", before + 1)
    assert any(split(d)[1] == content.replace(b"\r\n", b"\n") for d in delivered)


async def test_postfix_size_limit_refused_before_transfer(
    tmp_path: Path, clock: FakeClock, postfix: Postfix
) -> None:
    content = b"Message-ID: <interop-3@spool.test>\r\nSubject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 250
    before = len(list(postfix.maildir("bob").iterdir()))
    async with spooler(tmp_path, clock, {"relay": relay(postfix.port)}) as h:
        mid = await h.submit("bob@test.local", content=content)
        await h.spooler.flush(force=True)
        (r,) = (await h.message(mid)).recipients
    assert (r.state, r.last_status) == (RecipientState.FAILED, "5.3.4")
    assert "size limit 200000" in (r.last_text or "")
    assert b"interop-3" not in postfix.log().encode()  # Postfix never saw the message
    assert len(list(postfix.maildir("bob").iterdir())) == before


# RFC 3461 parameters relayed as Postfix passes them: Postfix takes them, and answers NOTIFY=SUCCESS with
# its own delivery report (to the sender's mailbox), quoting our ENVID and ORCPT back
async def test_postfix_takes_them_and_reports_success_quoting_envid_and_orcpt(
    tmp_path: Path, clock: FakeClock, postfix: Postfix
) -> None:
    content = b"Message-ID: <dsn-1@spool.test>\r\nFrom: bob@test.local\r\nSubject: dsn\r\n\r\nbody\r\n"
    delivered = len(list(postfix.maildir("alice").iterdir()))  # the test runs on each loop: one Postfix
    before = len(list(postfix.maildir("bob").iterdir()))
    envid = f"spool-env-{before}"
    async with spooler(tmp_path, clock, {"relay": relay(postfix.port)}) as h:
        store = h.daemon.stores[h.daemon.default_store]
        outbox = await store.folder(FolderRole.OUTBOX)
        rcpt = NewRecipient("alice@test.local", notify=Notify.SUCCESS, orcpt="rfc822;first+x@test.local")
        draft = Draft(content, [rcpt], sender="bob@test.local", dsn_ret=Ret.HDRS, dsn_envid=envid)
        mid = await store.submit_new(outbox.id, draft)
        await h.spooler.flush(force=True)
        (r,) = (await h.message(mid)).recipients
        assert r.state is RecipientState.DELIVERED, r.last_text
    await anyio.to_thread.run_sync(postfix.wait_for_mail, "alice", delivered + 1)
    got = await anyio.to_thread.run_sync(postfix.wait_for_mail, "bob", before + 1)  # Postfix's success DSN
    [report] = [m for m in got if envid.encode() in m]
    parsed = email.message_from_bytes(report, policy=email.policy.compat32)
    assert parsed.get_content_type() == "multipart/report", report[:2000]
    status = next(p for p in parsed.walk() if p.get_content_type() == "message/delivery-status")
    per_message, block = status.get_payload()  # type: ignore[misc]
    assert per_message["Original-Envelope-Id"] == envid
    assert block["Original-Recipient"] == "rfc822;first+x@test.local"
    assert block["Action"] == "delivered" and block["Final-Recipient"] == "rfc822; alice@test.local"

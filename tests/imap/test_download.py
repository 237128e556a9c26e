"""Download from a real Dovecot into the store: byte-exact, exactly once across flushes, restarts and a
commit that was never acknowledged, each after-download policy, a UIDVALIDITY change, IDLE push, TLS,
a refused login and two accounts in one daemon."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from spoolerd.envelope import header_sender, header_subject
from spoolerd.errors import TransportError
from spoolerd.events import NewMail
from spoolerd.message import FolderRole
from spoolerd.transport import Direction, TransportContext
from tests.conftest import FakeClock
from tests.engine.harness import Harness, spooler
from tests.peers.dovecot import Dovecot
from transports.imap import ImapSettings, ImapTransport
from transports.imap import download as download_module
from transports.imap.session import CommandFailed, ImapError, Session

from .conftest import Account, message, new_account, on_both_loops


def imap(account: Account, **settings: Any) -> dict[str, dict[str, Any]]:
    return {"mail": account.settings(**settings)}


async def inbox(h: Harness, store: str | None = None) -> list[bytes]:
    return [m.content for m in await h.folder(FolderRole.INBOX, store)]


async def download(h: Harness, name: str = "mail", store: str | None = None) -> int:
    """flush --download, as the control command does it; then how many messages the store's inbox
    holds (the daemon's own first pass may have taken some before the flush: totals do not race)."""
    with anyio.fail_after(30):
        await h.transport(name).flush(Direction.DOWNLOAD)
    return len(await inbox(h, store))


async def test_200_messages_arrive_byte_exact_once(
    tmp_path: Path, clock: FakeClock, account: Account
) -> None:
    sent = [message(i, size=300 + 37 * i) for i in range(200)]
    async with account.client() as other:
        for content in sent:
            await other.append(content)
    async with spooler(tmp_path, clock, imap(account)) as h:
        assert await download(h) == 200
        assert await download(h) == 200  # a second flush takes nothing again
        got = await inbox(h)
        assert sorted(got) == sorted(sent)
        assert all(m.message_class == "IPM.Note" for m in await h.folder(FolderRole.INBOX))
    async with spooler(tmp_path, clock, imap(account)) as h:  # a restart does not download it all again
        async with account.client() as other:
            await other.append(late := message(1000))
        assert await download(h) == 201
        assert sorted(await inbox(h)) == sorted([*sent, late])
    async with account.client() as other:
        flags = {uid: f for uid, (f, _) in (await other.messages()).items()}
    assert len(flags) == 201 and not any("\\Seen" in f for f in flags.values())  # keep: untouched


@pytest.mark.parametrize("policy", ["seen", "delete", "move"])
async def test_a_commit_never_acknowledged_is_not_downloaded_twice(
    tmp_path: Path, clock: FakeClock, account: Account, policy: str
) -> None:
    """The spooler commits (message and UID in one transaction) and dies before the server hears of it:
    the next daemon acknowledges it (\\Seen, delete, move) and takes nothing twice."""
    async with account.client() as other:
        await other.create("Archive")
        for i in range(3):
            await other.append(message(i))
    extra = {"move_to": "Archive"} if policy == "move" else {}
    settings = imap(account, after_download=policy, **extra)
    async with spooler(tmp_path, clock) as h:  # the first daemon, with the account not yet running
        context = TransportContext("mail", h.daemon.stores, default_store="local")
        options = {k: v for k, v in settings["mail"].items() if k != "provider"}
        transport = ImapTransport(ImapSettings.model_validate(options), context)
        await transport.start()
        with anyio.fail_after(10):
            session = await transport._connect()
            passes = transport._downloader.run(session)
            first = await anext(passes)
            await h.store.deliver(first.message, state=first.state)
            await passes.aclose()  # no acknowledge: as if killed right after the commit
            session.close()
    async with account.client() as other:
        left = await other.messages()
        assert len(left) == 3 and not any("\\Seen" in f for f, _ in left.values())
    async with spooler(tmp_path, clock, settings) as h:
        assert await download(h) == 3
    async with account.client() as other:
        left = await other.messages()
        archived = await other.messages("Archive")
    if policy == "seen":
        assert len(left) == 3 and all("\\Seen" in f for f, _ in left.values())
    else:
        assert left == {} and len(archived) == (3 if policy == "move" else 0)


async def test_move_without_move_never_copies_twice(
    tmp_path: Path, clock: FakeClock, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server without MOVE: COPY, then \\Deleted and EXPUNGE. If the second step is refused, the next
    pass must not COPY again."""
    real_has, real_flags = Session.has, Session.add_flags
    refuse = [True]

    def has(self: Session, capability: str) -> bool:
        return capability != "MOVE" and real_has(self, capability)

    async def add_flags(self: Session, uids: str, flags: str) -> None:
        if flags == "\\Deleted" and refuse[0]:
            raise CommandFailed("refused", "NO", b"[NOPERM] not today")
        await real_flags(self, uids, flags)

    monkeypatch.setattr(Session, "has", has)
    monkeypatch.setattr(Session, "add_flags", add_flags)
    async with account.client() as other:
        await other.create("Archive")
        for i in range(3):
            await other.append(message(i))
    settings = imap(account, after_download="move", move_to="Archive")
    async with spooler(tmp_path, clock, settings) as h:
        assert await download(h) == 3
        assert await download(h) == 3  # refused again: still nothing copied twice
        refuse[0] = False
        assert await download(h) == 3
    async with account.client() as other:
        assert await other.messages() == {}
        assert len(await other.messages("Archive")) == 3


@pytest.mark.parametrize("policy", ["seen", "delete", "move"])
async def test_after_download_policies(
    tmp_path: Path, clock: FakeClock, account: Account, policy: str
) -> None:
    async with account.client() as other:
        await other.create("Archive")
        for i in range(5):
            await other.append(message(i))
    extra = {"move_to": "Archive"} if policy == "move" else {}
    async with spooler(tmp_path, clock, imap(account, after_download=policy, **extra)) as h:
        assert await download(h) == 5
        async with account.client() as other:
            await other.append(message(99))
        assert await download(h) == 6
        assert len(await inbox(h)) == 6
        async with account.client() as other:
            left = await other.messages()
            archived = await other.messages("Archive")
        if policy == "seen":
            assert len(left) == 6 and all("\\Seen" in f for f, _ in left.values())
        elif policy == "delete":
            assert left == {} and archived == {}
        else:
            assert left == {} and len(archived) == 6
        memory = await h.store.transport_state("mail")
        uid_keys = [k for k in memory if "/uid/" in k]
        assert len(uid_keys) == (6 if policy == "seen" else 0)  # nothing remembered of what is gone


async def test_uidvalidity_change_downloads_only_the_new(
    tmp_path: Path, clock: FakeClock, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = [message(i) for i in range(4)]
    async with account.client() as other:
        await other.create("Feed")
        for content in old:
            await other.append(content, "Feed")
    settings = imap(account, mailboxes=["Feed"])
    monkeypatch.setattr(download_module, "_REVALIDATE_BATCH", 2)  # several FETCHes even for 5 messages
    async with spooler(tmp_path, clock, settings) as h:
        assert await download(h) == 4
        async with account.client() as other:  # the mailbox is rebuilt: same mail, new UIDVALIDITY
            await other.delete("Feed")
            await other.create("Feed")
            for content in [*old, new := message(50)]:
                await other.append(content, "Feed")
        assert await download(h) == 5
        assert sorted(await inbox(h)) == sorted([*old, new])
        row = h.transport("mail").status()
        assert any("UIDVALIDITY changed" in notice and "4 of 5" in notice for notice in row["notices"])
        assert await download(h) == 5


async def rebuild(account: Account, mailbox: str, contents: list[bytes]) -> None:
    """The mailbox deleted and made again with ``contents``: a new UIDVALIDITY, every UID new."""
    async with account.client() as other:
        await other.delete(mailbox)
        await other.create(mailbox)
        for content in contents:
            await other.append(content, mailbox)


def lookalike(subject: bytes, body: bytes = b"the same size\r\n") -> bytes:
    """No Message-ID, no Date: the sender, the size and what the header says are all there is."""
    return b"From: feed@example.org\r\nSubject: " + subject + b"\r\n\r\n" + body


async def test_uidvalidity_change_never_takes_a_lookalike_for_a_downloaded_message(
    tmp_path: Path, clock: FakeClock, account: Account
) -> None:
    """Before: size and From matched, so the new message was taken for the old one and never fetched."""
    first, second = lookalike(b"first"), lookalike(b"other")
    assert len(first) == len(second)
    async with account.client() as other:
        await other.create("Feed")
        await other.append(first, "Feed")
    async with spooler(tmp_path, clock, imap(account, mailboxes=["Feed"])) as h:
        assert await download(h) == 1
        await rebuild(account, "Feed", [second])
        assert await download(h) == 2
        assert sorted(await inbox(h)) == sorted([first, second])


async def test_uidvalidity_change_downloads_again_what_it_cannot_tell_apart(
    tmp_path: Path, clock: FakeClock, account: Account
) -> None:
    """Two messages with one header and one size, one of them downloaded: which one cannot be told, so
    both are downloaded again (a duplicate, never a loss), and the status row says so."""
    taken = lookalike(b"same", b"body one\r\n")
    twin = lookalike(b"same", b"body two\r\n")
    async with account.client() as other:
        await other.create("Feed")
        await other.append(taken, "Feed")
    async with spooler(tmp_path, clock, imap(account, mailboxes=["Feed"])) as h:
        assert await download(h) == 1
        await rebuild(account, "Feed", [twin, taken])
        assert await download(h) == 3
        assert sorted(await inbox(h)) == sorted([taken, taken, twin])
        row = h.transport("mail").status()
        assert row["counters"]["downloaded_again"] == 2
        assert any("2 alike in size and header" in notice for notice in row["notices"])
        assert await download(h) == 3  # remembered now: nothing a third time


async def test_sender_and_subject_are_read_from_the_header_section_only(
    tmp_path: Path, clock: FakeClock, account: Account
) -> None:
    """The transport gives the spooler the sender and subject, so nobody parses a 5 MB body for them."""
    big = message(1, size=5_000_000, subject="=?utf-8?q?gro=C3=9F?=")
    async with account.client() as other:
        await other.append(big)
    settings = ImapSettings.model_validate({k: v for k, v in account.settings().items() if k != "provider"})
    async with spooler(tmp_path, clock, imap(account, mailboxes=[])) as h:
        downloader = download_module.Downloader("mail", settings, "local", h.store, clock)
        transport = h.transport("mail")
        session = await transport._connect()
        try:
            items = [item async for item in downloader.run(session)]
        finally:
            session.close()
    (item,) = items
    assert item.message.content == big
    assert (item.message.sender, item.message.subject) == ("sender@example.org", "groß")
    head = big[: big.index(b"\r\n\r\n")]
    began = time.perf_counter()
    header_sender(head), header_subject(head)
    header_only = time.perf_counter() - began
    began = time.perf_counter()
    header_sender(big), header_subject(big)
    whole = time.perf_counter() - began
    print(
        f"sender and subject of a 5 MB message: {header_only * 1000:.2f} ms (header) vs {whole * 1000:.0f} ms"
    )


async def test_idle_push_arrives_within_two_seconds(
    tmp_path: Path, clock: FakeClock, account: Account
) -> None:
    async with spooler(tmp_path, clock, imap(account)) as h:
        assert await download(h) == 0  # connected, and now idling
        async with h.store.subscribe() as events, account.client() as other:
            await other.append(message(7))
            appended = time.monotonic()
            with anyio.fail_after(2):
                while not isinstance(await events.receive(), NewMail):
                    pass
            latency = time.monotonic() - appended
        assert len(await inbox(h)) == 1
        print(f"IDLE push latency: {latency * 1000:.0f} ms")


@on_both_loops
async def test_implicit_tls_needs_the_ca(
    tmp_path: Path, clock: FakeClock, account: Account, server: Dovecot, ca_file: Path
) -> None:
    async with account.client() as other:
        await other.append(content := message(1))
    tls = {"tls": "implicit", "port": server.imaps_port, "host": "localhost"}
    async with spooler(tmp_path / "a", clock, imap(account, **tls)) as h:
        with pytest.raises(TransportError, match="certificate"):
            await download(h)
        assert "failure" in h.transport("mail").status()["status"]
        assert await inbox(h) == []
    async with spooler(tmp_path / "b", clock, imap(account, **tls, ca_file=str(ca_file))) as h:
        assert await download(h) == 1
        assert await inbox(h) == [content]


@on_both_loops
async def test_starttls(tmp_path: Path, clock: FakeClock, account: Account, ca_file: Path) -> None:
    async with account.client() as other:
        await other.append(content := message(1))
    settings = imap(account, tls="starttls", host="localhost", ca_file=str(ca_file))
    async with spooler(tmp_path, clock, settings) as h:
        assert await download(h) == 1
        assert await inbox(h) == [content]


async def test_wrong_password_is_a_clear_failure_not_a_loop(
    tmp_path: Path, clock: FakeClock, account: Account
) -> None:
    account.password_file.write_text("not-the-password\n")
    async with spooler(tmp_path, clock, imap(account)) as h:
        transport = h.transport("mail")
        with pytest.raises(TransportError, match=f"login as {account.user} refused"):
            await download(h)
        row = transport.status()
        assert "failure" in row["status"] and "refused" in row["last_error"]
        assert row["retry_in"] > 3000  # login_retry (an hour), not the reconnect backoff
        assert "not-the-password" not in row["last_error"]
        passes = transport._ended
        with pytest.raises(TransportError):  # a flush tries again at once; nothing else does
            await download(h)
        assert transport._ended == passes + 1
        account.password_file.write_text(account.password + "\n")  # fixed: the next flush works
        assert await download(h) == 0
        assert "failure" not in transport.status()["status"]


async def test_two_accounts_in_one_daemon(
    tmp_path: Path, clock: FakeClock, server: Dovecot, account: Account
) -> None:
    second = new_account(server, tmp_path)
    for acct, n in ((account, 1), (second, 2)):
        async with acct.client() as other:
            await other.append(message(n))
    stores = {
        "local": {"provider": "sqlite", "addresses": ["@localhost"]},
        "other": {"provider": "sqlite", "path": str(tmp_path / "other.db")},
    }
    transports = {"first": account.settings(), "second": second.settings(store="other")}
    async with spooler(tmp_path, clock, transports, stores=stores) as h:
        assert await download(h, "first", "local") == 1
        assert await download(h, "second", "other") == 1
        firsts, seconds = await inbox(h, "local"), await inbox(h, "other")
    assert b"message 1\r\n" in firsts[0] and b"message 2\r\n" in seconds[0]  # each where it belongs


async def test_mail_arriving_during_a_pass_is_not_left_for_the_next_idle_renewal(
    tmp_path: Path, clock: FakeClock, account: Account
) -> None:
    """aioimaplib drops the EXISTS a server sends while a FETCH or STORE runs: the transport must still
    notice the message before it settles into a 25-minute IDLE."""
    async with account.client() as other:
        await other.append(message(1))
    async with spooler(tmp_path, clock, imap(account, after_download="seen")) as h:
        store = h.store
        arrived = anyio.Event()

        class AppendingStore:  # the first commit makes another message arrive before the \\Seen STORE
            def __getattr__(self, name: str) -> Any:
                return getattr(store, name)

            async def deliver(self, *args: Any, **kwargs: Any) -> Any:
                if not arrived.is_set():
                    arrived.set()
                    async with account.client() as other:
                        await other.append(message(2))
                return await store.deliver(*args, **kwargs)

        h.spooler.stores["local"] = AppendingStore()  # type: ignore[assignment]
        async with store.subscribe() as events:
            with anyio.fail_after(5):  # the daemon's first pass, then no flush: it must find it itself
                while len(await inbox(h)) < 2:
                    await events.receive()
        assert arrived.is_set()


async def test_without_idle_the_account_is_checked_every_poll_interval(
    tmp_path: Path, clock: FakeClock, account: Account
) -> None:
    async with spooler(tmp_path, clock, imap(account, idle=False, poll_interval=0.5)) as h:
        assert await download(h) == 0
        async with h.store.subscribe() as events, account.client() as other:
            await other.append(message(3))
            with anyio.fail_after(5):  # no flush, no IDLE: the poll timer finds it
                while not isinstance(await events.receive(), NewMail):
                    pass


async def test_a_dropped_connection_is_replaced_and_push_goes_on(
    tmp_path: Path, clock: FakeClock, account: Account
) -> None:
    async with spooler(tmp_path, clock, imap(account)) as h:
        transport = h.transport("mail")
        assert await download(h) == 0
        first = transport._download
        first._client.protocol.transport.abort()  # the network drops the idling connection
        async with h.store.subscribe() as events, account.client() as other:
            await other.append(message(4))
            with anyio.fail_after(5):  # reconnected at once, and the new message found
                while not isinstance(await events.receive(), NewMail):
                    pass
        assert transport._download is not first and not first.alive


async def test_a_downloaded_report_is_filed_as_a_report(
    tmp_path: Path, clock: FakeClock, account: Account
) -> None:
    ndr = (
        b"From: MAILER-DAEMON@example.org\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
        b"Message-ID: <ndr-1@example.org>\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nIt bounced.\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; example.org\r\n\r\n"
        b"Final-Recipient: rfc822; gone@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n"
    )
    async with account.client() as other:
        await other.append(ndr)
        await other.append(message(1))
    async with spooler(tmp_path, clock, imap(account)) as h:
        assert await download(h) == 2
        classes = sorted(m.message_class for m in await h.folder(FolderRole.INBOX))
    assert classes == ["IPM.Note", "REPORT.IPM.Note.NDR"]


async def test_idle_is_renewed_on_time(tmp_path: Path, clock: FakeClock, account: Account) -> None:
    async with spooler(tmp_path, clock, imap(account, idle_renew=1)) as h:
        transport = h.transport("mail")
        with anyio.fail_after(10):  # three renewals, each ending IDLE and looking again, then idling on
            while transport._ended < 3:
                await transport._pass_over.wait()
        assert "failure" not in transport.status()["status"]


async def test_a_server_failing_every_wait_is_not_hammered(
    tmp_path: Path, clock: FakeClock, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IDLE refused at once, every time: after the first quick retry, the reconnects back off."""
    starts: list[float] = []

    async def refuse(self: Session, seconds: float, wake: Any) -> str:
        starts.append(time.monotonic())
        raise ImapError("IDLE refused")

    monkeypatch.setattr(Session, "wait_for_mail", refuse)
    async with spooler(tmp_path, clock, imap(account, reconnect_initial=0.5)) as h:
        transport = h.transport("mail")
        with anyio.fail_after(10):
            while len(starts) < 4:
                await transport._pass_over.wait()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[1] >= 0.5 and gaps[2] >= 1.0  # 0.5 s, then doubling (a lower bound only)

"""The IMAP transport in a real daemon process: flush --download and status over the control socket, and a
SIGKILL in the middle of a download (between commits and acknowledgements, wherever it falls) that
neither loses nor duplicates a message."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from spoolerd.config import load_config, open_stores
from spoolerd.message import Draft, FolderRole, NewRecipient
from spoolerd.plugins import PluginRegistry
from tests.control.conftest import Client
from tests.control.conftest import Daemon as ControlDaemon
from tests.maillog.conftest import records, wait_records
from tests.peers.dovecot import Dovecot
from tests.peers.ports import free_port
from tests.status.test_status_rows import becomes, changes_until
from transports.imap.wire import header_fields

from .conftest import Account, message

ON_BOTH_LOOPS = True  # the daemon runs on uvloop; these tests' own clients run on both loops


class Daemon(ControlDaemon):
    """The control tests' daemon process, with one store and the account as its only transport."""

    def __init__(self, root: Path, account: Account, **imap: Any) -> None:
        self.options = "\n".join(f"{k} = {json.dumps(v)}" for k, v in account.settings(**imap).items())
        super().__init__(root)

    loopback = False  # also deliver to the store's own addresses (@localhost)

    def write_config(self) -> Path:
        cfg = self.root / "spoolerd.toml"
        local = 'addresses = ["@localhost"]\n[transports.loopback]\nprovider = "loopback"\n'
        cfg.write_text(
            f'[spooler]\nstate_dir = "{self.root / "state"}"\n[control]\nsocket = "{self.socket}"\n'
            f'[log]\nformat = "json"\n[stores.local]\nprovider = "sqlite"\n{local if self.loopback else ""}'
            f"[transports.mail]\n{self.options}\n"
        )
        return cfg

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()


@pytest.fixture
def root() -> Path:
    path = Path(tempfile.mkdtemp(prefix="spi"))  # short: a socket path has at most 107 bytes
    os.chmod(path, 0o755)
    return path


@pytest.fixture
async def running(root: Path, account: Account) -> AsyncIterator[Daemon]:
    daemon = Daemon(root, account, after_download="seen")
    await daemon.start()
    yield daemon
    if daemon.proc is not None and daemon.proc.returncode is None:
        assert await daemon.stop() == 0


async def inbox_size(config: Path) -> int:
    """Messages in the store's inbox, read with the daemon down."""
    opened = open_stores(load_config(config), PluginRegistry())
    store = opened.stores["local"]
    await store.start()
    try:
        return len(await store.list_messages((await store.folder(FolderRole.INBOX)).id))
    finally:
        await store.stop()


async def subjects(client: Client) -> list[str]:
    return [row["subject"] for row in await client.ok("list", folder="inbox")]


async def test_flush_download_and_status_over_the_socket(running: Daemon, account: Account) -> None:
    client = await running.client()
    async with account.client() as other:
        for i in range(20):
            await other.append(message(i))
    counts = await client.ok("flush", direction="download", transport="mail")
    received = counts["received"]
    assert received <= 20  # IDLE may have pushed some before the flush
    assert sorted(await subjects(client)) == sorted(f"number {i}" for i in range(20))
    (row,) = [r for r in await client.ok("status") if r["name"] == "mail"]
    assert "inbound_enabled" in row["status"] and "failure" not in row["status"]
    assert row["counters"]["received"] == 20 and row["mailboxes"] == ["INBOX"]
    await client.stream.aclose()


async def test_starttls_in_the_daemon(root: Path, account: Account, ca_file: Path) -> None:
    """The daemon runs on uvloop, whose transports are not asyncio's classes: STARTTLS must work there."""
    async with account.client() as other:
        for i in range(3):
            await other.append(message(i))
    daemon = Daemon(root, account, tls="starttls", host="localhost", ca_file=str(ca_file))
    await daemon.start()
    try:
        client = await daemon.client()
        await client.ok("flush", direction="download", transport="mail")
        assert sorted(await subjects(client)) == [f"number {i}" for i in range(3)]
        (row,) = [r for r in await client.ok("status") if r["name"] == "mail"]
        assert "failure" not in row["status"] and row["last_error"] is None
        await client.stream.aclose()
    finally:
        assert await daemon.stop() == 0


async def test_refused_login_is_an_error_answer_and_a_status_row(
    root: Path, account: Account, server: Dovecot
) -> None:
    account.password_file.write_text("wrong\n")
    daemon = Daemon(root, account)
    await daemon.start()
    try:
        client = await daemon.client()
        answer = await client.call("flush", direction="download")
        assert not answer["ok"] and answer["error"]["code"] == "imap_error"
        assert f"login as {account.user} refused" in answer["error"]["message"]
        (row,) = [r for r in await client.ok("status") if r["name"] == "mail"]
        assert "failure" in row["status"] and "refused" in row["last_error"]
        assert (await client.ok("ping"))["pong"]  # the daemon is fine
        await client.stream.aclose()
    finally:
        assert await daemon.stop() == 0


@pytest.mark.slow
async def test_sigkill_during_download_loses_and_duplicates_nothing(root: Path, account: Account) -> None:
    total = 400
    async with account.client() as other:
        for i in range(total):
            await other.append(message(i, size=2000))
    # batches of 200: \\Seen goes out after each 200 commits, so a kill after 50 commits lands between
    # commit and acknowledgement (the test checks that it did)
    daemon = Daemon(root, account, after_download="seen", fetch_batch=200)
    await daemon.start()  # the first pass starts at once
    watcher = await daemon.client()
    await watcher.stream.send(b'{"id": "w", "cmd": "subscribe"}\n')
    seen = 0
    with anyio.fail_after(30):
        while seen < 50:
            event = (await watcher.line()).get("event", {})
            seen += event.get("type") == "new_mail"
    await daemon.kill()
    await watcher.stream.aclose()

    async with account.client() as other:
        flagged = sum("\\Seen" in f for f, _ in (await other.messages()).values())
    committed = await inbox_size(daemon.root / "spoolerd.toml")
    assert flagged < committed < total  # committed here, not yet acknowledged there: the window

    again = Daemon(root, account, after_download="seen", fetch_batch=200)
    await again.start()
    try:
        client = await again.client()
        await client.ok("flush", direction="download")
        got = await subjects(client)
        assert len(got) == total and sorted(got) == sorted(f"number {i}" for i in range(total))
        await client.stream.aclose()
    finally:
        assert await again.stop() == 0
    async with account.client() as other:
        assert all("\\Seen" in f for f, _ in (await other.messages()).values())


class SentCopyDaemon(Daemon):
    """Mail delivered locally (loopback), a copy of each filed in the account's Sent."""

    loopback = True


def outgoing(number: int) -> bytes:
    return (
        f"From: me@localhost\r\nTo: friend@localhost\r\nSubject: sent {number}\r\n"
        f"Message-ID: <sent-{number}@localhost>\r\n\r\n" + "body\r\n" * 50
    ).encode()


async def queue(config: Path, total: int) -> None:
    """``total`` messages queued with the daemon down, to be sent at once when it starts."""
    opened = open_stores(load_config(config), PluginRegistry())
    store = opened.stores["local"]
    await store.start()
    try:
        outbox, sent = await store.folder(FolderRole.OUTBOX), await store.folder(FolderRole.SENT)
        for i in range(total):
            draft = Draft(outgoing(i), [NewRecipient("friend@localhost")], sender="me@localhost")
            mid = await store.create_message(outbox.id, replace(draft, sentmail_folder=sent.id))
            await store.submit(mid)
    finally:
        await store.stop()


@pytest.mark.slow
async def test_sent_copies_owed_survive_sigkill(root: Path, account: Account) -> None:
    """Copies owed when the daemon dies are filed after the restart, each exactly once. First life: the
    server is unreachable, every message is delivered and finished, its copy owed; SIGKILL. Second
    life: the debts are paid from the store; SIGKILL again part-way, APPENDs in flight. Third life: the
    rest is paid, an earlier APPEND looked for before each, so nothing is filed twice."""
    total = 300
    down = {"mailboxes": [], "sent_copy": True, "port": free_port(), "reconnect_initial": 0.5}
    daemon = SentCopyDaemon(root, account, **down)
    await queue(daemon.write_config(), total)
    try:
        await daemon.start()
        watcher = await daemon.client()
        await watcher.stream.send(b'{"id": "w", "cmd": "subscribe"}\n')
        delivered = 0
        with anyio.fail_after(60):
            while delivered < total:
                delivered += (await watcher.line()).get("event", {}).get("type") == "delivered"
        client = await daemon.client()
        (row,) = [r for r in await client.ok("status") if r["name"] == "mail"]
        assert row["sent_copies_owed"] > 0 and row["counters"]["sent_copies"] == 0
        await daemon.kill()
        for c in daemon.clients:
            await c.stream.aclose()
        daemon.clients.clear()

        up = {"mailboxes": [], "sent_copy": True, "reconnect_initial": 0.5}
        daemon = SentCopyDaemon(root, account, **up)
        async with account.client() as other:
            await other.create("Sent")  # to watch it from the start
            await daemon.start()
            with anyio.fail_after(60):  # the daemon's own line, not the server's IDLE push, which can
                await wait_records(daemon, "sent copy filed", total // 6)  # come after the last copy is filed
            await daemon.kill()
            filed_before = len(await other.messages("Sent"))
        assert filed_before < total  # killed part-way

        daemon = SentCopyDaemon(root, account, **up)
        await daemon.start()
        async with account.client() as other:
            with anyio.fail_after(60):
                await other.wait_for("Sent", total)
            copies = (await other.messages("Sent")).values()
        ids = Counter(header_fields(content, ["MESSAGE-ID"])["MESSAGE-ID"] for _, content in copies)
        lost = total - len(ids)
        twice = sum(n - 1 for n in ids.values())
        print(
            f"sent copies: {total} owed, {filed_before} filed before the 2nd kill, {lost} lost, {twice} twice"
        )
        assert (lost, twice) == (0, 0)
        client = await daemon.client()
        (row,) = [r for r in await client.ok("status") if r["name"] == "mail"]
        assert row["sent_copies_owed"] == 0
    finally:
        for c in daemon.clients:
            await c.stream.aclose()
        if daemon.proc is not None and daemon.proc.returncode is None:
            assert await daemon.stop() == 0


async def test_a_refused_login_and_the_next_good_one_are_status_events(
    root: Path, account: Account, server: Dovecot
) -> None:
    """Issue #18 part 4: the transport's own failure (a download loop whose login is refused) is its
    row's state as it happens, told by the transport (``watch``), not read when the table is: failing
    (one log line), then, once it logs in, one ``status_changed`` back to online."""
    account.password_file.write_text("wrong\n")
    daemon = Daemon(root, account)
    await daemon.start()
    try:
        client, watch = await daemon.client(), await daemon.client()
        await watch.stream.send(b'{"id": "w", "cmd": "subscribe"}\n')
        await wait_records(daemon, "transport failing", 1)
        (row,) = [r for r in await client.ok("status") if r["name"] == "mail"]
        assert row["state"] == "failing" and "refused" in row["last_error"] and row["failing_since"]
        account.password_file.write_text(f"{account.password}\n")
        await client.ok("flush", direction="download", transport="mail")  # it logs in now
        back = await changes_until(watch, becomes("transport:mail", "online"))
        mail = [(e["was"], e["state"]) for e in back if e["entry_id"] == "transport:mail"]
        assert ("failing", "flushing") in mail or ("failing", "online") in mail, mail  # no longer failing
        (row,) = [r for r in await client.ok("status") if r["name"] == "mail"]
        assert row["state"] == "online" and row["failing_since"] is None
        assert len(records(daemon, "transport failing")) == 1
        await client.stream.aclose()
        await watch.stream.aclose()
    finally:
        assert await daemon.stop() == 0

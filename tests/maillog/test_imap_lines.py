"""The downloaded lines of a real daemon fetching from the private Dovecot: one per batch committed, with
the account, the mailbox and the UID range."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.imap.conftest import Account, account, ca, message, server
from tests.imap.test_daemon import Daemon

from .conftest import wait_records

__all__ = ["account", "ca", "server"]  # the IMAP tests' fixtures: a Dovecot and a fresh account on it


async def test_a_line_per_downloaded_batch(root: Path, daemons: list[Any], account: Account) -> None:
    async with account.client() as other:
        for i in range(3):
            await other.append(message(i))
    daemon = Daemon(root, account, after_download="seen")
    daemons.append(daemon)
    await daemon.start()
    (first,) = await wait_records(daemon, "downloaded", 1)
    expected = {"transport": "mail", "account": account.user, "mailbox": "INBOX", "store": "local"}
    assert {k: first[k] for k in expected} == expected and first["level"] == "info"
    assert (first["uids"], first["count"]) == ("1:3", 3)
    assert first["server"] == f"127.0.0.1:{account.server.imap_port}"
    async with account.client() as other:
        await other.append(message(3))
    second = (await wait_records(daemon, "downloaded", 2))[1]
    assert (second["uids"], second["count"]) == ("4", 1)

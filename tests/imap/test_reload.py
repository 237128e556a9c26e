"""A reload that points the IMAP transport of a real daemon at another account: its download loop is
replaced, and mail is fetched from the new account from then on."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from tests.peers.dovecot import Dovecot

from .conftest import Account, new_account
from .test_daemon import Daemon, message, subjects


async def test_a_reload_to_another_account_downloads_from_the_new_one(
    account: Account, server: Dovecot, tmp_path: Path
) -> None:
    root = Path(tempfile.mkdtemp(prefix="spi"))  # short: a socket path has at most 107 bytes
    os.chmod(root, 0o755)
    daemon = Daemon(root, account, after_download="seen")
    await daemon.start()
    try:
        client = await daemon.client()
        async with account.client() as first:
            await first.append(message(1))
        await client.ok("flush", direction="download", transport="mail")
        assert await subjects(client) == ["number 1"]

        other = new_account(server, tmp_path)
        daemon.options = "\n".join(
            f"{k} = {json.dumps(v)}" for k, v in other.settings(after_download="seen").items()
        )
        daemon.write_config()
        answer = await client.ok("reload")
        assert answer["applied"] == ["transports.mail changed (username, password_file)"]
        async with other.client() as second:
            await second.append(message(2))
        await client.ok("flush", direction="download", transport="mail")
        assert sorted(await subjects(client)) == ["number 1", "number 2"]
        (row,) = [r for r in await client.ok("status") if r["name"] == "mail"]
        assert "inbound_enabled" in row["status"] and "failure" not in row["status"]
        async with other.client() as second:  # acknowledged on the new account by the new transport
            assert ["\\Seen" in flags for flags, _ in (await second.messages()).values()] == [True]
        await client.stream.aclose()
    finally:
        assert await daemon.stop() == 0

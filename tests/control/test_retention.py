"""Retention as an operator meets it, against a real daemon: ``spoolerctl rm`` and ``purge``, the store's
status row, ``sent_copies = false`` through the sendmail command, and the timer's log line."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.control.conftest import Daemon
from tests.control.test_tools import ctl, run, sendmail


class StoreKeysDaemon(Daemon):
    """The control tests' daemon with more keys in ``[stores.local]``."""

    def __init__(self, root: Path, store_keys: str) -> None:
        super().__init__(root)
        self.store_keys = store_keys

    def write_config(self) -> Path:
        cfg = super().write_config()
        text = cfg.read_text()
        cfg.write_text(text.replace("[stores.local]\n", f"[stores.local]\n{self.store_keys}", 1))
        return cfg


@pytest.fixture
async def configured(request: pytest.FixtureRequest) -> AsyncIterator[StoreKeysDaemon]:
    root = Path(tempfile.mkdtemp(prefix="spd"))  # short: a socket path has at most 107 bytes
    os.chmod(root, 0o755)
    d = StoreKeysDaemon(root, request.param)
    await d.start()
    yield d
    if d.proc is not None and d.proc.returncode is None:
        assert await d.stop() == 0


async def ctl_json(daemon: Daemon, *args: str) -> Any:
    return json.loads((await run(*ctl(daemon, "--json", *args), check=True)).stdout)


async def folder_ids(daemon: Daemon, folder: str) -> list[str]:
    return [str(row["id"]) for row in await ctl_json(daemon, "ls", folder)]


async def send_local(daemon: Daemon, count: int = 1) -> None:
    argv, env = sendmail(daemon, "alice@localhost")
    for i in range(count):
        await run(*argv, stdin=f"Subject: {i}\n\nbody\n".encode(), env=env, check=True)
    await run(*ctl(daemon, "flush"), check=True)


async def test_rm_removes_a_message_and_refuses_a_queued_one(daemon: Daemon, tmp_path: Path) -> None:
    await send_local(daemon)
    (copy,) = await folder_ids(daemon, "inbox")
    done = await run(*ctl(daemon, "rm", copy), check=True)
    assert done.stdout == f"{copy} removed\n".encode()
    assert await folder_ids(daemon, "inbox") == []
    gone = await run(*ctl(daemon, "cat", copy))
    assert gone.returncode == 1 and b"not_found" in gone.stderr
    again = await run(*ctl(daemon, "rm", copy))
    assert again.returncode == 1 and b"not_found" in again.stderr

    mail = tmp_path / "later.eml"
    mail.write_bytes(b"To: far@remote.test\nSubject: waits\n\nx\n")
    await run(*ctl(daemon, "offline", "remote"), check=True)  # it stays queued
    queued = (await ctl_json(daemon, "submit", str(mail)))["id"]
    refused = await run(*ctl(daemon, "rm", queued))
    assert refused.returncode == 1
    assert b"submitted" in refused.stderr and f"spoolerctl abort {queued}".encode() in refused.stderr
    assert [row["id"] for row in await ctl_json(daemon, "queue")] == [queued]

    await run(*ctl(daemon, "abort", queued), check=True)
    assert await ctl_json(daemon, "rm", queued) == {"id": queued, "store": "local", "removed": True}
    assert queued not in await folder_ids(daemon, "outbox")


async def test_purge_removes_what_is_older_and_says_how_many(daemon: Daemon) -> None:
    await send_local(daemon, 3)
    assert len(await folder_ids(daemon, "sent")) == 3
    kept = await run(*ctl(daemon, "purge", "sent", "--older-than", "1h"), check=True)
    assert kept.stdout == b"0 message(s) removed from sent in local\n"
    assert await ctl_json(daemon, "purge", "sent", "--older-than", "0s") == {
        "store": "local",
        "folder": "sent",
        "purged": 3,
    }
    assert await folder_ids(daemon, "sent") == []
    assert len(await folder_ids(daemon, "inbox")) == 3  # another folder: untouched

    bad = await run(*ctl(daemon, "purge", "sent", "--older-than", "a week"))
    assert bad.returncode == 2 and b"not a duration" in bad.stderr
    missing = await run(*ctl(daemon, "purge", "9999", "--older-than", "1d"))
    assert missing.returncode == 1 and b"not_found" in missing.stderr
    (row,) = [r for r in await ctl_json(daemon, "status") if r["resource_type"] == "store"]
    assert row["retention"] == {"sent": "7d", "sent_copies": True, "next_purge": None, "purged": 0}


@pytest.mark.parametrize("configured", ["sent_copies = false\n"], indirect=True)
async def test_no_copies_of_what_local_programs_submit(configured: StoreKeysDaemon) -> None:
    await send_local(configured, 2)
    assert len(await folder_ids(configured, "inbox")) == 2
    assert await folder_ids(configured, "sent") == []
    assert await folder_ids(configured, "outbox") == []  # deleted once sent, not left behind
    (row,) = [r for r in await ctl_json(configured, "status") if r["resource_type"] == "store"]
    assert row["retention"]["sent_copies"] is False


@pytest.mark.parametrize("configured", ['sent_retention = "2s"\n'], indirect=True)
async def test_the_timer_purges_and_logs_one_line(configured: StoreKeysDaemon) -> None:
    await send_local(configured)
    assert len(await folder_ids(configured, "sent")) == 1
    found = await configured.log_line(lambda line: b'"sent items purged"' in line)
    entry = json.loads(configured.log[found])
    assert {k: entry[k] for k in ("store", "folder", "count", "older_than", "level")} == {
        "store": "local",
        "folder": "sent",
        "count": 1,
        "older_than": "2s",
        "level": "info",
    }
    assert await folder_ids(configured, "sent") == []
    (row,) = [r for r in await ctl_json(configured, "status") if r["resource_type"] == "store"]
    assert row["retention"] == {"sent": "2s", "sent_copies": True, "next_purge": None, "purged": 1}


async def test_no_copies_of_what_sendmail_queues_with_the_daemon_down() -> None:
    root = Path(tempfile.mkdtemp(prefix="spd"))
    os.chmod(root, 0o755)
    down = StoreKeysDaemon(root, "sent_copies = false\n")
    argv, env = sendmail(down, "alice@localhost")
    env["SPOOLERD_CONFIG"] = str(down.write_config())
    done = await run(*argv, stdin=b"Subject: waits\n\nfor the daemon\n", env=env)
    assert done.returncode == 0, done.stderr
    await down.start()
    try:
        await run(*ctl(down, "flush"), check=True)
        assert len(await folder_ids(down, "inbox")) == 1
        assert await folder_ids(down, "sent") == []
        assert await folder_ids(down, "outbox") == []
    finally:
        assert await down.stop() == 0

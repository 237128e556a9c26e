"""A rate limit (``rate`` on a transport) against a real Postfix relay: every message arrives, no sooner
than the rate allows (the exact spacing, to the tenth of a second, is checked against an aiosmtpd sink in
test_rate.py: Postfix stamps its Received fields to the second, after a connection set-up whose time
varies). On asyncio and uvloop; skipped only where Postfix cannot run."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.peers.ports import free_port
from tests.peers.postfix import Postfix, available

from .test_rate import daemon, submit_to


@pytest.fixture(scope="module")
def postfix() -> Iterator[Postfix]:
    reason = available()
    if reason is not None:
        if os.environ.get("SPOOLERD_REQUIRE_PEERS"):
            pytest.fail(reason)
        pytest.skip(reason)
    instance = Postfix(free_port(), mailboxes=["carol"])
    instance.start()
    yield instance
    instance.stop()


async def test_a_rate_holds_against_a_real_postfix_relay(tmp_path: Path, postfix: Postfix) -> None:
    before = len(list(postfix.maildir("carol").iterdir()))
    started = time.monotonic()
    async with daemon(tmp_path, postfix.port, "2/1s") as d:
        await submit_to(d, "carol@test.local", 6)
        mail = await anyio.to_thread.run_sync(postfix.wait_for_mail, "carol", before + 6)
    elapsed = time.monotonic() - started
    ours = [m for m in mail if b"Subject: rate" in m][-6:]
    assert len(ours) == 6
    assert all(b"Received: from spool.test" in m for m in ours)  # through Postfix's smtpd, from us
    assert elapsed >= 2 * 0.85, elapsed  # three windows of two: two periods at least

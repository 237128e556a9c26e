"""Failover between real Postfix relays, through the spooler: one stopped, one answering 421 (Postfix's
access table makes it close the session at RCPT, as a relay going down for maintenance does), one
that delivers into Maildirs. Skipped only where Postfix cannot run, and never in CI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from spoolerd.control.commands import COMMANDS
from spoolerd.message import RecipientState
from tests.conftest import FakeClock
from tests.engine.harness import Harness, spooler
from tests.peers.ports import free_port
from tests.peers.postfix import Postfix, available

CLOSING = "check_client_access inline:{ { 127.0.0.1 = 421 4.3.2 relay closing for maintenance } }"


def _require_postfix() -> None:
    reason = available()
    if reason is not None:
        if os.environ.get("SPOOLERD_REQUIRE_PEERS"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def good() -> Iterator[Postfix]:
    _require_postfix()
    instance = Postfix(free_port(), mailboxes=["alice", "bob"])
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def closing() -> Iterator[Postfix]:
    _require_postfix()
    instance = Postfix(
        free_port(), mailboxes=["alice", "bob"], settings={"smtpd_client_restrictions": CLOSING}
    )
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def stopped() -> int:
    """The port of a Postfix relay that ran and was stopped: nothing answers there now."""
    _require_postfix()
    instance = Postfix(free_port(), mailboxes=["alice"])
    instance.start()
    instance.stop()
    return instance.port


def relay(*ports: int) -> dict[str, object]:
    return {
        "provider": "smtp",
        "hosts": [f"127.0.0.1:{p}" for p in ports],
        "tls": "none",
        "helo": "spool.test",
    }


async def relay_rows(h: Harness) -> list[tuple[str, str]]:
    args, handler = COMMANDS["status"]
    rows: list[dict[str, Any]] = await handler(h.daemon, args(), None)  # type: ignore[arg-type]
    (row,) = [r for r in rows if r["resource_type"] == "transport" and r["name"] == "relay"]
    return [(r["relay"], r["state"]) for r in row["relays"]]


def changes(lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(line["event"], line["relay"]) for line in lines if line["event"] in ("relay down", "relay up")]


async def test_two_postfix_relays_the_first_stopped(
    tmp_path: Path, clock: FakeClock, stopped: int, good: Postfix
) -> None:
    before = len(list(good.maildir("alice").iterdir()))
    async with spooler(tmp_path, clock, {"relay": relay(stopped, good.port)}) as h:
        with capture_logs() as lines:
            mid = await h.submit("alice@test.local")
            await h.spooler.flush(force=True)
        (r,) = (await h.message(mid)).recipients
        assert r.state is RecipientState.DELIVERED, r.last_text
        assert await relay_rows(h) == [(f"127.0.0.1:{stopped}", "down"), (f"127.0.0.1:{good.port}", "up")]
    assert changes(lines) == [("relay down", f"127.0.0.1:{stopped}")]
    (delivery,) = [x for x in lines if x["event"] == "delivery"]
    assert delivery["relay"] == f"127.0.0.1:{good.port}" and delivery["status"] == "sent"
    await anyio.to_thread.run_sync(good.wait_for_mail, "alice", before + 1)


async def test_three_postfix_relays_one_stopped_one_answering_421(
    tmp_path: Path, clock: FakeClock, stopped: int, closing: Postfix, good: Postfix
) -> None:
    before = len(list(good.maildir("bob").iterdir()))
    async with spooler(tmp_path, clock, {"relay": relay(stopped, closing.port, good.port)}) as h:
        with capture_logs() as lines:
            mid = await h.submit("alice@test.local", "bob@test.local")
            await h.spooler.flush(force=True)
        recipients = (await h.message(mid)).recipients
        assert [r.state for r in recipients] == [RecipientState.DELIVERED] * 2
        down = [f"127.0.0.1:{stopped}", f"127.0.0.1:{closing.port}"]
        assert await relay_rows(h) == [(down[0], "down"), (down[1], "down"), (f"127.0.0.1:{good.port}", "up")]
    assert changes(lines) == [("relay down", peer) for peer in down]
    reason = next(x["reason"] for x in lines if x["event"] == "relay down" and x["relay"] == down[1])
    assert "421 4.3.2" in reason and "relay closing for maintenance" in reason
    assert "421 4.3.2" in closing.log()  # Postfix itself said it
    await anyio.to_thread.run_sync(good.wait_for_mail, "bob", before + 1)


async def test_every_postfix_relay_down_defers(
    tmp_path: Path, clock: FakeClock, stopped: int, closing: Postfix
) -> None:
    async with spooler(tmp_path, clock, {"relay": relay(stopped, closing.port)}) as h:
        with capture_logs() as lines:
            mid = await h.submit("alice@test.local")
            await h.spooler.flush(force=True)
        (r,) = (await h.message(mid)).recipients
        assert r.state is RecipientState.DEFERRED
        assert r.last_code is None  # the spooler holds the list of relays: it is down as a whole
        assert "cannot connect" in (r.last_text or "") and "relay closing for maintenance" in (
            r.last_text or ""
        )
        assert [state for _, state in await relay_rows(h)] == ["down", "down"]
    peers = [f"127.0.0.1:{stopped}", f"127.0.0.1:{closing.port}"]
    assert [peer for _, peer in changes(lines)] == [*peers, ",".join(peers)]  # each, then (spooler) the list

"""Rate limits per destination (``rate`` on a transport) in a running daemon on the real clock, against an
aiosmtpd sink that notes when each message arrives: a burst arrives no faster than the rate and all of
it arrives; a daemon restarted mid-burst keeps the budget (it is in the store); a 451 reply halves the
rate, shown in the status row, and the next messages arrive at the halved rate. On asyncio and uvloop."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from structlog.testing import capture_logs

from spoolerd.config import control_socket, parse_config
from spoolerd.control.status import status_table
from spoolerd.ctl import _show_status
from spoolerd.daemon import build, running
from spoolerd.errors import ConfigError
from spoolerd.message import Draft, FolderRole, NewRecipient
from spoolerd.plugins import PluginRegistry
from spoolerd.views import clock_time

from .conftest import Handler, ServerFactory

CONTENT = b"From: me@localhost\r\nTo: a@example.net\r\nSubject: rate\r\n\r\nbody\r\n"
SLACK = 0.15  # arrival jitter at the sink: scheduling, the SMTP exchange, the sink's own thread


@dataclass
class Counting(Handler):
    """Notes each arrival's time; answers MAIL with each of ``replies`` first, then takes mail."""

    times: list[float] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.replies:
            return self.replies.pop(0)
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.times.append(time.monotonic())
        return await super().handle_DATA(server, session, envelope)


def wait_for(handler: Counting, count: int, timeout: float = 15.0) -> None:
    with handler.arrived:
        assert handler.arrived.wait_for(lambda: len(handler.received) >= count, timeout), len(
            handler.received
        )


async def arrivals(handler: Counting, count: int) -> list[float]:
    """Wait (on the sink's arrivals, not a sleep) until ``count`` messages arrived; their times."""
    await anyio.to_thread.run_sync(wait_for, handler, count)
    return sorted(handler.times)


def spaced(times: list[float], messages: int, per: float) -> None:
    """No ``messages + 1`` arrivals within one period (less the sink's jitter)."""
    for first, last in zip(times, times[messages:], strict=False):
        assert last - first >= per - SLACK, times


SQLITE = {"provider": "sqlite"}


@asynccontextmanager
async def daemon(
    tmp_path: Path, port: int, rate: str | None, store: dict[str, Any] = SQLITE
) -> AsyncIterator[Any]:
    relay = {"provider": "smtp", "host": "127.0.0.1", "port": port, "tls": "none", "helo": "spool.test"}
    data = {
        "spooler": {"state_dir": str(tmp_path), "reporting_mta": "spool.test"},
        "stores": {"local": {**store, "addresses": ["@localhost"]}},
        "transports": {"relay": relay if rate is None else {**relay, "rate": rate}},
    }
    d = build(parse_config(data), PluginRegistry(), clock=time.time)
    async with running(d):
        yield d


async def submit(d: Any, count: int) -> list[str]:
    return await submit_to(d, "a@example.net", count)


async def submit_to(d: Any, recipient: str, count: int) -> list[str]:
    store = d.stores["local"]
    outbox = await store.folder(FolderRole.OUTBOX)
    draft = Draft(CONTENT, [NewRecipient(recipient)], sender="me@localhost")
    return [await store.submit_new(outbox.id, draft) for _ in range(count)]


async def tried(d: Any, mid: str) -> None:
    """Wait (on store events) until ``mid``'s first attempt is recorded."""
    store = d.stores["local"]
    async with store.subscribe() as events:
        with anyio.fail_after(10):
            while not (await store.open(mid)).recipients[0].attempts:
                await events.receive()


async def test_a_burst_arrives_at_the_rate_and_all_of_it(tmp_path: Path, smtp_server: ServerFactory) -> None:
    sink = smtp_server(Counting())
    assert isinstance(sink.handler, Counting)
    async with daemon(tmp_path, sink.port, "5/1s") as d:
        await submit(d, 20)
        times = await arrivals(sink.handler, 20)
    assert len(sink.handler.received) == 20
    spaced(times, 5, 1.0)
    assert times[-1] - times[0] >= 3 * (1.0 - SLACK)  # four windows of five: three periods at least


async def test_a_waiting_message_is_deferred_once_and_sent_at_its_turn(
    tmp_path: Path, smtp_server: ServerFactory
) -> None:
    """Each message over the budget has one deferral line (its turn) and then its sent line: it is not
    due back before its turn (the attempt's own milliseconds before the budget answered), nor deferred
    again because the message before it came back for its turn a little late."""
    sink = smtp_server(Counting())
    assert isinstance(sink.handler, Counting)
    with capture_logs() as lines:
        async with daemon(tmp_path, sink.port, "5/1s") as d:
            ids = await submit(d, 20)
            times = await arrivals(sink.handler, 20)
    spaced(times, 5, 1.0)
    statuses: dict[str, list[str]] = {mid: [] for mid in ids}
    for line in lines:
        if line["event"] == "delivery":
            statuses[line["queue_id"]].append(line["status"])
    told_to_wait = [mid for mid, seen in statuses.items() if seen != ["sent"]]
    assert len(told_to_wait) == 15, statuses
    assert all(statuses[mid] == ["deferred", "sent"] for mid in told_to_wait), statuses


async def test_the_queue_says_a_message_waits_for_its_turn(
    tmp_path: Path, smtp_server: ServerFactory
) -> None:
    """``spoolerctl queue`` on a message over the budget: under its recipient, the rate limit and its
    turn, as for a relay that is down (and ``--json`` has the rate under ``waiting``)."""
    sink = smtp_server(Counting())
    assert isinstance(sink.handler, Counting)
    async with daemon(tmp_path, sink.port, "2/1m") as d:
        async with d.spooler.events.subscribe() as events:
            await submit(d, 3)
            with anyio.fail_after(10):
                while (event := await events.receive())["type"] != "deferred":
                    pass
        spoolerctl = [sys.executable, "-m", "spoolerd.ctl", "--socket", str(control_socket(d.config))]
        text = (await anyio.run_process([*spoolerctl, "queue"])).stdout.decode()
        rows = json.loads((await anyio.run_process([*spoolerctl, "--json", "queue"])).stdout)
    row = next(r for r in rows if r["id"] == event["id"])  # the two sent may not have left the queue yet
    (rcpt,) = row["recipients"]
    destination = f"127.0.0.1:{sink.port}"
    turn = rcpt["waiting"]["until"]
    expected = {"transport": "relay", "destination": destination, "until": turn, "rate": "2/1m"}
    assert rcpt["waiting"] == expected
    assert turn == pytest.approx(row["due_at"], abs=0.5) and turn > time.time() + 50
    at = clock_time(turn, time.time())
    shown = f"(waiting: rate limit 2/1m to {destination} via relay: its turn at {at})"
    assert re.search(rf"pending +0 .*a@example\.net\n +{re.escape(shown)}", text), text


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_a_daemon_restarted_mid_burst_keeps_the_budget(
    tmp_path: Path, smtp_server: ServerFactory, dialect: str, store_section: dict[str, Any]
) -> None:
    sink = smtp_server(Counting())
    assert isinstance(sink.handler, Counting)
    async with daemon(tmp_path, sink.port, "5/2s", store_section) as d:
        await submit(d, 5)
        await arrivals(sink.handler, 5)
    async with daemon(tmp_path, sink.port, "5/2s", store_section) as d:  # at once: the period is not over
        await submit(d, 3)  # new to this daemon: only the stored budget can hold them back
        times = await arrivals(sink.handler, 8)
    spaced(times, 5, 2.0)


async def test_a_slow_down_reply_halves_the_rate(tmp_path: Path, smtp_server: ServerFactory) -> None:
    sink = smtp_server(Counting(replies=["451 4.7.1 slow down, please"]))
    assert isinstance(sink.handler, Counting)
    with capture_logs() as lines:
        async with daemon(tmp_path, sink.port, "4/1s") as d:
            (mid,) = await submit(d, 1)
            await tried(d, mid)  # it met the 451 and waits for its retry
            (row,) = [r for r in await status_table(d) if r.get("name") == "relay"]
            assert row["rate"]["messages"] == 4 and row["rate"]["per"] == 1.0
            ((destination, slowed),) = row["rate"]["slowed"].items()
            assert destination == f"127.0.0.1:{sink.port}" and slowed["messages"] == 2
            shown = _show_status([dict(r) for r in await status_table(d)])
            assert f"relay: 127.0.0.1:{sink.port} slowed down to 2 a period until" in shown
            await submit(d, 6)
            times = await arrivals(sink.handler, 6)
    spaced(times, 2, 1.0)  # two a second now, not four
    (changed,) = [x for x in lines if x["event"] == "rate changed"]
    assert changed["rate"] == "2/1s" and changed["until"] > time.time()


@pytest.mark.parametrize("rate", ["fast", "0/1m", "5/1y", "5"])
def test_a_bad_rate_is_a_config_error_naming_the_key(rate: str) -> None:
    data = {"transports": {"relay": {"provider": "loopback", "rate": rate}}}
    with pytest.raises(ConfigError) as raised:
        parse_config(data)
    assert any(p.startswith("transports.relay.rate") for p in raised.value.problems), raised.value.problems

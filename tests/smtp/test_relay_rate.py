"""A rate per relay (``relay_rates`` on an smtp transport with ``hosts``) in a running daemon on the real
clock, against two aiosmtpd relays that note when each message arrives: once the first relay's budget is
spent the rest go to the second; with both spent, messages wait (no attempt counted) and then all arrive;
a restarted daemon keeps the relay's budget (it is in the store). On asyncio and uvloop."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from spoolerd.config import parse_config
from spoolerd.config_plugins import plugin_problems
from spoolerd.daemon import build, running
from spoolerd.delivery.rates import RateBudgets
from spoolerd.plugins import PluginRegistry
from spoolerd.testing import FakeClock
from spoolerd.transport import OutcomeKind

from .conftest import ServerFactory, message
from .test_failover import Start, relays
from .test_rate import SLACK, Counting, arrivals, spaced, submit


@asynccontextmanager
async def daemon(
    tmp_path: Path, ports: list[int], relay_rates: dict[str, str], store: dict[str, Any] | None = None
) -> AsyncIterator[Any]:
    hosts = [f"127.0.0.1:{port}" for port in ports]
    relay = {"provider": "smtp", "hosts": hosts, "tls": "none", "helo": "spool.test"}
    data = {
        "spooler": {"state_dir": str(tmp_path), "reporting_mta": "spool.test"},
        "stores": {"local": {**(store or {"provider": "sqlite"}), "addresses": ["@localhost"]}},
        "transports": {"relay": {**relay, "relay_rates": relay_rates}},
    }
    d = build(parse_config(data), PluginRegistry(), clock=time.time)
    async with running(d):
        yield d


def sinks(smtp_server: ServerFactory) -> tuple[Counting, Counting, list[int]]:
    """Two relays whose arrivals share one condition, so a test can wait for them together."""
    arrived = threading.Condition()
    first, second = smtp_server(Counting(arrived=arrived)), smtp_server(Counting(arrived=arrived))
    assert isinstance(first.handler, Counting) and isinstance(second.handler, Counting)
    return first.handler, second.handler, [first.port, second.port]


def wait_for_both(first: Counting, second: Counting, count: int) -> None:
    with first.arrived:
        both = first.arrived.wait_for(lambda: len(first.received) + len(second.received) >= count, 15.0)
        assert both, (len(first.received), len(second.received))


async def test_a_relay_whose_budget_is_spent_is_passed_over(
    tmp_path: Path, smtp_server: ServerFactory
) -> None:
    first, second, ports = sinks(smtp_server)
    async with daemon(tmp_path, ports, {f"127.0.0.1:{ports[0]}": "2/1m"}) as d:
        await submit(d, 5)
        await arrivals(second, 3)
        await arrivals(first, 2)
    assert len(first.received) == 2 and len(second.received) == 3


async def test_with_every_relay_spent_messages_wait_and_then_all_arrive(
    tmp_path: Path, smtp_server: ServerFactory
) -> None:
    first, second, ports = sinks(smtp_server)
    rates = {f"127.0.0.1:{ports[0]}": "2/1s", f"127.0.0.1:{ports[1]}": "2/1s"}
    async with daemon(tmp_path, ports, rates) as d:
        await submit(d, 8)
        await anyio.to_thread.run_sync(wait_for_both, first, second, 8)
        (slot,) = [s for s in d.spooler.dispatcher.transports if s.name == "relay"]
    assert slot.counters == {"sent": 8, "deferred": 0, "failed": 0}  # waiting was no attempt
    spaced(sorted(first.times), 2, 1.0)
    spaced(sorted(second.times), 2, 1.0)
    times = sorted(first.times + second.times)
    spaced(times, 4, 1.0)
    assert times[-1] - times[0] >= 1.0 - SLACK  # eight at four a second: a period at least


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_a_restarted_daemon_keeps_the_relay_budget(
    tmp_path: Path, smtp_server: ServerFactory, dialect: str, store_section: dict[str, Any]
) -> None:
    first, second, ports = sinks(smtp_server)
    rates = {f"127.0.0.1:{ports[0]}": "3/1m"}
    async with daemon(tmp_path, ports, rates, store_section) as d:
        await submit(d, 3)
        await arrivals(first, 3)
    async with daemon(tmp_path, ports, rates, store_section) as d:
        await submit(d, 2)  # new to this daemon: only the stored budget passes the first relay over
        await arrivals(second, 2)
    assert len(first.received) == 3 and len(second.received) == 2


async def test_the_transport_passes_spent_relays_over_and_names_when_the_first_frees(
    smtp_server: ServerFactory, started: Start
) -> None:
    """The transport on its own, with a gate over in-memory budgets and a clock moved by hand."""
    first, second, ports = sinks(smtp_server)
    clock = FakeClock()
    peers = [f"127.0.0.1:{port}" for port in ports]
    t = relays(ports, clock, relay_rates={peers[0]: "1/1m", peers[1]: "2/1m"})
    t.use_rate_gate(RateBudgets(None, clock).gate("relay"))
    await started(t)
    sent = [await t.send(*message(f"to{i}@example.net")) for i in range(3)]
    assert [(o.kind, o.relay) for (o,) in sent] == [
        (OutcomeKind.DELIVERED, p) for p in [peers[0], *peers[1:] * 2]
    ]
    clock.advance(10)
    (waits,) = await t.send(*message("to3@example.net"))
    assert (waits.kind, waits.code, waits.status, waits.attempted) == (
        OutcomeKind.DEFERRED,
        None,
        "4.7.0",
        False,
    )
    assert waits.retry_after == 50.0  # the first relay's send, a minute before
    assert [row["state"] for row in t.status()["relays"]] == ["up", "up"]  # passed over, not down
    clock.advance(50)
    ((o,),) = [await t.send(*message("to4@example.net"))]
    assert (o.kind, o.relay) == (OutcomeKind.DELIVERED, peers[0])
    assert len(first.received) == 2 and len(second.received) == 2


@pytest.mark.parametrize(
    ("rates", "problem"),
    [
        ({"127.0.0.1:2525": "fast"}, "not messages/period"),
        ({"elsewhere.test:2525": "5/1m"}, "'elsewhere.test:2525' is not one of the relays"),
        ({"127.0.0.1": "5/1m"}, "'127.0.0.1' is not one of the relays"),
    ],
)
def test_a_bad_relay_rate_is_a_config_error_naming_the_key(rates: dict[str, str], problem: str) -> None:
    relay = {"provider": "smtp", "hosts": ["127.0.0.1:2525", "b.test"], "tls": "none", "relay_rates": rates}
    problems = plugin_problems({"transports": {"relay": relay}}, PluginRegistry())
    found = [p for p in problems if p.startswith("transports.relay.relay_rates")]
    assert found and problem in found[0], problems

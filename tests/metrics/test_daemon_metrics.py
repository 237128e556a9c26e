"""Scraping a real daemon (a process on uvloop, relaying to aiosmtpd) while mail flows: every number is
checked against what happened, which the tests learn from the daemon's own events and log lines."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.control.conftest import Client
from tests.peers.ports import free_port
from tests.smtp.conftest import ServerFactory

from .conftest import MetricsDaemon, dump, event, http, watch

OK, LATER, GONE, LOCAL = "ok@example.net", "r451-later@example.net", "r550-gone@example.net", "me@localhost"
CONTENT = b"From: me@localhost\r\nTo: ok@example.net\r\nSubject: metrics\r\n\r\nbody\r\n"


async def submit(client: Client, *recipients: str) -> str:
    answer = await client.ok(
        "submit", message=base64.b64encode(CONTENT).decode(), recipients=list(recipients)
    )
    return str(answer["id"])


async def started(daemons: list[Any], daemon: MetricsDaemon) -> tuple[MetricsDaemon, Client, Client]:
    """The daemon, once its queue is counted; a client; and a client watching its events."""
    daemons.append(daemon)
    began = len(daemon.log)
    await daemon.start()
    await daemon.log_line(lambda line: b"queue counted" in line, began)
    watcher = await daemon.client()
    await watch(watcher)
    return daemon, await daemon.client(), watcher


async def test_a_scrape_counts_outcomes_queue_and_latency_as_they_happened(
    root: Path, daemons: list[Any], smtp_server: ServerFactory
) -> None:
    server = smtp_server()
    daemon, client, watcher = await started(daemons, MetricsDaemon(root, server.port))
    relay = f"127.0.0.1:{server.port}"
    empty = await daemon.scrape()
    assert empty.values("spoolerd_queue_messages", store="local") == dict.fromkeys(
        ["queued", "deferred", "held", "active"], 0.0
    )
    assert empty.value("spoolerd_recipient_outcomes_total", transport="relay", status="sent") == 0

    mixed = await submit(client, OK, LATER, GONE)  # sent, deferred (451), bounced (550)
    await event(watcher, "failed", mixed)  # the attempt's last event
    local = await submit(client, LOCAL)
    await event(watcher, "delivered", local)
    refused = await submit(client, GONE)  # bounced alone: its NDR is filed at once
    await event(watcher, "failed", refused)

    s = await daemon.scrape()
    assert s.values("spoolerd_recipient_outcomes_total", transport="relay") == {
        "sent": 1, "deferred": 1, "bounced": 2, "expired": 0
    }, dump(s)  # fmt: skip
    assert s.values("spoolerd_recipient_outcomes_total", transport="loopback")["sent"] == 1
    assert s.value("spoolerd_delivery_delay_seconds_count", transport="relay") == 1
    assert s.value("spoolerd_delivery_delay_seconds_count", transport="loopback") == 1
    assert 0 <= s.value("spoolerd_delivery_delay_seconds_sum", transport="relay") < 30
    assert s.value("spoolerd_delivery_attempt_duration_seconds_count", store="local") == 3
    assert s.value("spoolerd_submissions_total", via="socket", store="local") == 3
    assert s.value("spoolerd_submissions_total", via="smtp", store="local") == 0
    assert s.value("spoolerd_reports_filed_total", report="ndr") == 1
    # the queue: the mixed message waits for its deferred recipient, nothing else is left
    assert s.values("spoolerd_queue_messages", store="local") == {
        "queued": 0, "deferred": 1, "held": 0, "active": 0
    }  # fmt: skip
    assert s.values("spoolerd_queue_recipients", store="local")["deferred"] == 1
    assert 0 < s.value("spoolerd_queue_oldest_message_age_seconds", store="local") < 60
    assert s.value("spoolerd_transport_up", transport="relay") == 1
    assert s.value("spoolerd_relay_up", transport="relay", relay=relay) == 1
    assert s.value("spoolerd_relay_consecutive_failures", transport="relay", relay=relay) == 0
    assert s.value("spoolerd_store_up", store="local") == 1
    assert s.value("process_resident_memory_bytes") > 0

    await client.ok("hold", id=mixed)
    held = await daemon.scrape()
    assert held.values("spoolerd_queue_messages", store="local")["held"] == 1
    assert held.values("spoolerd_queue_recipients", store="local") == {
        "queued": 0, "deferred": 0, "held": 1, "active": 0
    }  # fmt: skip
    await client.ok("abort", id=mixed)
    gone = await daemon.scrape()
    assert sum(gone.values("spoolerd_queue_messages", store="local").values()) == 0
    assert gone.value("spoolerd_queue_oldest_message_age_seconds", store="local") == 0


async def test_a_dead_relay_is_down_with_its_consecutive_failures(root: Path, daemons: list[Any]) -> None:
    dead = free_port()  # nothing listens there
    daemon, client, watcher = await started(daemons, MetricsDaemon(root, dead))
    relay = f"127.0.0.1:{dead}"
    queued = await submit(client, OK, "other@example.net")
    await event(watcher, "deferred", queued)
    s = await daemon.scrape()
    assert s.value("spoolerd_relay_up", transport="relay", relay=relay) == 0
    assert s.value("spoolerd_relay_consecutive_failures", transport="relay", relay=relay) == 1
    assert s.value("spoolerd_transport_up", transport="relay") == 0
    assert s.value("spoolerd_transport_online", transport="relay") == 1
    assert s.value("spoolerd_transport_up", transport="loopback") == 1
    assert s.value("spoolerd_recipient_outcomes_total", transport="relay", status="deferred") == 2
    assert s.values("spoolerd_queue_recipients", store="local")["deferred"] == 2

    await client.ok("flush", force=True)  # tried again, through the hold: a second failure in a row
    again = await daemon.scrape()
    assert again.value("spoolerd_relay_consecutive_failures", transport="relay", relay=relay) == 2
    await client.ok("offline", transport="relay")
    assert (await daemon.scrape()).value("spoolerd_transport_online", transport="relay") == 0


async def test_a_restarted_daemon_counts_its_queue_from_the_store(root: Path, daemons: list[Any]) -> None:
    daemon, client, watcher = await started(daemons, MetricsDaemon(root, free_port()))
    ids = []
    for _ in range(3):
        ids.append(await submit(client, OK, "second@example.net"))
        await event(watcher, "deferred", ids[-1])
    await client.ok("hold", id=ids[0])
    for c in daemon.clients:
        await c.stream.aclose()
    daemon.clients.clear()
    assert await daemon.stop() == 0

    _, client, _ = await started([], daemon)
    s = await daemon.scrape()
    assert s.values("spoolerd_queue_messages", store="local") == {
        "queued": 0, "deferred": 2, "held": 1, "active": 0
    }, dump(s)  # fmt: skip
    assert s.values("spoolerd_queue_recipients", store="local") == {
        "queued": 0, "deferred": 4, "held": 2, "active": 0
    }  # fmt: skip
    assert s.value("spoolerd_submissions_total", via="socket", store="local") == 0  # since this start


async def test_only_get_and_head_of_metrics_are_answered(root: Path, daemons: list[Any]) -> None:
    daemon, _, _ = await started(daemons, MetricsDaemon(root, free_port()))
    port = daemon.metrics_port
    assert (await http(port, "GET", "/"))[0] == b"HTTP/1.1 404 Not Found"
    assert (await http(port, "POST", "/metrics"))[0] == b"HTTP/1.1 405 Method Not Allowed"
    status, body = await http(port, "HEAD", "/metrics")
    assert status == b"HTTP/1.1 200 OK" and body == b""
    status, body = await http(port, "GET", "/metrics?x=1")
    assert status == b"HTTP/1.1 200 OK" and b"spoolerd_queue_messages" in body
    assert (await http(port, "", "", raw=b"GET /metrics HTTP/1.1\r\n" + b"X: y\r\n" * 2000))[0] == b""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_served_on_either_event_loop(
    root: Path, daemons: list[Any], loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOOLERD_EVENT_LOOP", loop)
    daemon, client, watcher = await started(daemons, MetricsDaemon(root, free_port()))
    delivered = await submit(client, LOCAL)
    await event(watcher, "delivered", delivered)
    s = await daemon.scrape()
    assert s.value("spoolerd_recipient_outcomes_total", transport="loopback", status="sent") == 1


async def test_a_write_by_another_process_is_counted_by_a_rescan(root: Path, daemons: list[Any]) -> None:
    """spoolerd-sendmail that cannot reach the daemon writes into its store itself: the daemon sees an
    ``external`` change it cannot follow, counts the queue again, and the message is in the gauges."""
    daemon, client, watcher = await started(daemons, MetricsDaemon(root, free_port()))
    began = len(daemon.log)
    env = {**os.environ, "SPOOLERD_CONFIG": str(daemon.root / "spoolerd.toml"),
           "SPOOLERD_SOCKET": str(daemon.root / "nobody.sock")}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spoolerd.sendmail", "-i", "--", OK, "second@example.net",
        stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    _, err = await proc.communicate(CONTENT)
    assert proc.returncode == 0, err
    counted = await daemon.log_line(lambda line: b"queue counted" in line, began)
    assert json.loads(daemon.log[counted])["messages"] >= 1
    (queued,) = [r["id"] for r in await client.ok("queue")]
    await event(watcher, "deferred", queued)  # tried (the relay is dead), whenever the count came
    s = await daemon.scrape()
    assert s.values("spoolerd_queue_messages", store="local") == {
        "queued": 0, "deferred": 1, "held": 0, "active": 0
    }, dump(s)  # fmt: skip
    assert s.values("spoolerd_queue_recipients", store="local")["deferred"] == 2
    assert s.value("spoolerd_submissions_total", via="sendmail", store="local") == 0  # not this process's


async def test_an_address_it_cannot_listen_on_stops_the_start(root: Path) -> None:
    daemon = MetricsDaemon(root, free_port())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", daemon.metrics_port))
        taken.listen()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "spoolerd.cli", "run", "--config", str(daemon.write_config()),
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 70, err  # EX_SOFTWARE, as for a listener's address
    assert f"metrics.address: cannot listen on 127.0.0.1:{daemon.metrics_port}".encode() in err, err
    assert b"Traceback" not in err

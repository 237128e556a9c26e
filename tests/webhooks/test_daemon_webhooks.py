"""Delivery events POSTed by a real daemon (relaying to aiosmtpd) to a local endpoint: signed and as
documented; late but in order when the endpoint fails for a while; none lost when the daemon is killed
with SIGKILL while it sends; a dead endpoint's backlog bounded, oldest dropped, delivery unaffected."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.control.conftest import Client
from tests.maillog.conftest import wait_records
from tests.metrics.conftest import watch
from tests.peers.ports import free_port
from tests.smtp.conftest import ServerFactory

from .conftest import SECRET, Receiver, WebhookDaemon

OK, LATER, GONE = "ok@example.net", "r451-later@example.net", "r550-gone@example.net"
CONTENT = b"From: me@localhost\r\nMessage-ID: <hook.%d@test>\r\nSubject: webhooks\r\n\r\nbody\r\n"


async def submit(client: Client, *recipients: str, n: int = 1) -> str:
    content = base64.b64encode(CONTENT % n).decode()
    return str((await client.ok("submit", message=content, recipients=list(recipients)))["id"])


async def started(daemons: list[Any], daemon: WebhookDaemon) -> tuple[WebhookDaemon, Client]:
    daemons.append(daemon)
    await daemon.start()
    return daemon, await daemon.client()


def url(receiver: Receiver) -> str:
    return f"http://127.0.0.1:{receiver.port}/hook"


async def sent(daemon: WebhookDaemon, count: int) -> None:
    """Wait until the daemon has counted ``count`` events sent (its debug lines say how many at a time)."""
    lines = await wait_records(daemon, "webhook events sent", 1)
    while sum(r["events"] for r in lines) < count:
        lines = await wait_records(daemon, "webhook events sent", len(lines) + 1)


def webhook_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r for r in rows if r["resource_type"] == "webhook")


async def test_events_arrive_signed_with_the_documented_payload(
    root: Path, daemons: list[Any], smtp_server: ServerFactory, receiver: Receiver
) -> None:
    server = smtp_server()
    daemon, client = await started(daemons, WebhookDaemon(root, server.port, url(receiver), level="debug"))
    before = time.time()
    mid = await submit(client, OK, LATER, GONE, n=7)
    await receiver.until(lambda r: len(r.taken) == 3)
    by_recipient = {e["recipient"]: e for e in receiver.events()}
    assert {r: e["event"] for r, e in by_recipient.items()} == {
        OK: "delivered",
        LATER: "deferred",
        GONE: "bounced",
    }
    ok, later, gone = by_recipient[OK], by_recipient[LATER], by_recipient[GONE]
    assert set(ok) == {
        "id", "event", "time", "store", "queue_id", "message_id", "sender", "recipient", "transport", "dsn",
        "code", "reply", "attempt", "next_attempt",
    }  # fmt: skip
    assert (ok["queue_id"], ok["store"], ok["message_id"], ok["transport"]) == (
        mid,
        "local",
        "<hook.7@test>",
        "relay",
    )
    assert (ok["dsn"], ok["code"], ok["attempt"], ok["next_attempt"]) == ("2.0.0", 250, 1, None)
    assert before <= ok["time"] <= time.time()
    assert (later["dsn"], later["code"]) == ("4.1.1", 451) and later["next_attempt"] > before
    assert (gone["dsn"], gone["code"]) == ("5.1.1", 550) and "scripted reply" in gone["reply"]
    assert len({e["id"] for e in receiver.events()}) == 3
    await sent(daemon, 3)
    for post in receiver.taken:  # the signature, as the README tells a receiver to check it
        stamp = post.headers["x-spoolerd-timestamp"]
        expected = hmac.new(SECRET, stamp.encode() + b"." + post.body, hashlib.sha256).hexdigest()
        assert post.headers["x-spoolerd-signature"] == f"sha256={expected}"
        assert abs(int(stamp) - time.time()) < 60 and post.headers["content-type"] == "application/json"
    row = webhook_row(await client.ok("status"))
    assert row["entry_id"] == "webhook:app"  # as every row has one
    assert (row["name"], row["status"], row["counters"]["sent"], row["counters"]["failed"]) == (
        "app",
        ["available"],
        3,
        0,
    )
    scrape = await daemon.scrape()
    assert scrape.value("spoolerd_webhook_events_sent_total", webhook="app") == 3


async def test_an_endpoint_answering_500_gets_every_event_afterwards_in_order(
    root: Path,
    daemons: list[Any],
    smtp_server: ServerFactory,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPOOLERD__SPOOLER__DELAY_WARNING_AFTER", "0.2")  # the daemon's environment
    server = smtp_server()
    receiver.statuses = [500, 500, 503]
    retry = "[spooler.retry]\ninitial = 0.3\nmaximum = 0.3\ngive_up_after = 1.5\ndestination_hold = 0\n"
    hook = "retry_initial = 0.2\nretry_maximum = 0.5\n"
    daemon, client = await started(
        daemons, WebhookDaemon(root, server.port, url(receiver), webhook=hook, more=retry, level="debug")
    )
    mids = [await submit(client, OK, LATER, n=n) for n in range(3)]
    # each message: OK delivered, LATER deferred (its sender warned once) until its lifetime ends: expired
    await receiver.until(lambda r: sum(e["event"] == "expired" for e in r.events()) == 3)
    assert len(receiver.posts) - len(receiver.taken) == 3  # the three failures, each sent again
    for mid in mids:
        mine = [e for e in receiver.events() if e["queue_id"] == mid]
        later = [e for e in mine if e["recipient"] == LATER and e["event"] != "delayed"]
        assert [e["event"] for e in later[:-1]] == ["deferred"] * (len(later) - 1) and len(later) >= 2
        assert later[-1]["event"] == "expired" and later[-1]["dsn"] == "4.4.7"
        assert [e["attempt"] for e in later] == list(range(1, len(later) + 1))  # in order, none missing
        order = [(e["event"], e["attempt"]) for e in mine if e["recipient"] == LATER]
        (warned,) = [i for i, (kind, _) in enumerate(order) if kind == "delayed"]
        assert 0 < warned < len(order) - 1 and order[warned - 1] == ("deferred", order[warned][1])
        assert [e["event"] for e in mine if e["recipient"] == OK] == ["delivered"]
    await sent(daemon, len(receiver.taken))
    row = webhook_row(await client.ok("status"))
    assert (row["status"], row["counters"]["failed"], row["counters"]["backlog"]) == (["available"], 3, 0)
    assert "answered 503" in row["last_error"]


async def test_sigkill_while_sending_loses_no_event(
    root: Path, daemons: list[Any], smtp_server: ServerFactory, receiver: Receiver
) -> None:
    server = smtp_server()
    daemon, client = await started(daemons, WebhookDaemon(root, server.port, url(receiver)))
    receiver.hold = True  # the first POST is taken and never answered: the daemon dies in mid-send
    mids = [await submit(client, OK, GONE, n=n) for n in range(5)]
    watcher = await daemon.client()
    await watch(watcher)
    await wait_records(daemon, "delivery", 10)  # every outcome is recorded: its event is in the outbox
    await receiver.until(lambda r: len(r.posts) >= 1)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGKILL)
    assert await daemon.proc.wait() == -signal.SIGKILL
    for c in daemon.clients:
        await c.stream.aclose()
    daemon.clients.clear()
    receiver.hold = False
    await daemon.start()
    await receiver.until(
        lambda r: (
            {(e["queue_id"], e["recipient"]) for e in r.events()}
            >= {(m, a) for m in mids for a in (OK, GONE)}
        )
    )
    kinds = {(e["queue_id"], e["recipient"], e["event"]) for e in receiver.events()}
    assert kinds == {(m, OK, "delivered") for m in mids} | {(m, GONE, "bounced") for m in mids}


async def test_a_dead_endpoint_keeps_only_the_newest_events_and_never_slows_delivery(
    root: Path, daemons: list[Any], smtp_server: ServerFactory
) -> None:
    server = smtp_server()
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    hook = "max_backlog = 3\nretry_initial = 60\nretry_maximum = 60\ntimeout = 1\n"
    daemon, client = await started(daemons, WebhookDaemon(root, server.port, dead, webhook=hook))
    mids = [await submit(client, OK, n=n) for n in range(8)]
    await wait_records(daemon, "delivery", 8)  # every message delivered while the endpoint is dead
    dropped_lines = await wait_records(daemon, "webhook backlog over max_backlog: oldest events dropped", 1)
    while sum(r["dropped"] for r in dropped_lines) < 8 - 3:  # each new event wakes the sender, which trims
        dropped_lines = await wait_records(
            daemon, "webhook backlog over max_backlog: oldest events dropped", len(dropped_lines) + 1
        )
    row = webhook_row(await client.ok("status"))
    assert row["status"] == ["failure"] and row["counters"]["sent"] == 0
    assert row["counters"]["backlog"] <= 3 and "cannot connect" in row["last_error"]
    scrape = await daemon.scrape()
    dropped = scrape.value("spoolerd_webhook_events_dropped_total", webhook="app")
    assert 0 < dropped == row["counters"]["dropped"]
    db = sqlite3.connect(root / "state" / "spool.db")
    try:  # which 3 are kept: the conformance suite checks it is the newest (test_the_backlog_loses...)
        kept = [mid for (mid,) in db.execute("SELECT message_id FROM outbox ORDER BY seq")]
    finally:
        db.close()
    assert len(set(kept)) == 3 and set(kept) <= set(mids) and dropped == 5


def readme_receiver() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    return readme.split("A small receiver (Python's standard library only):\n\n```python\n")[1].split("```")[
        0
    ]


async def test_the_readme_receiver_takes_the_events_of_a_real_daemon(
    root: Path, daemons: list[Any], smtp_server: ServerFactory
) -> None:
    code = readme_receiver()
    port = free_port()
    script = root / "receiver.py"
    script.write_text(
        code.replace("/etc/spoolerd/webhook.secret", str(root / "webhook.secret")).replace("8080", str(port))
    )
    server = smtp_server()
    daemon = WebhookDaemon(root, server.port, f"http://127.0.0.1:{port}/hook")  # writes the secret file
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-u", str(script), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        _, client = await started(daemons, daemon)
        mid = await submit(client, OK, GONE)
        assert proc.stdout is not None
        with anyio.fail_after(30):
            lines = {(await proc.stdout.readline()).decode().strip() for _ in range(2)}
        assert lines == {f"delivered {mid} {OK} 2.0.0", f"bounced {mid} {GONE} 5.1.1"}
    finally:
        proc.terminate()
        await proc.wait()

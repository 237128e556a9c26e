"""Every state change is a status event on ``subscribe`` (issue #18 part 4; MAPI-NOTES "Status table",
conformance checklist item 24: a change of any row raises a table notification), for the rows whose
changes happen outside the spooler's own work: a relay of a transport with several, reported by the
transport itself (``Watched``), and an SMTP listener."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import anyio

from tests.maillog.conftest import records, wait_records
from tests.peers.ports import free_port
from tests.smtp.conftest import ServerFactory

from .conftest import ListenerDaemon, TwoRelayDaemon
from .test_status_rows import MESSAGE, becomes, changes_until, row, started


async def test_a_relay_going_down_and_up_again_is_a_status_event_each_time(
    root: Path, daemons: list[Any], smtp_server: ServerFactory
) -> None:
    """Seed: the transport tells the spooler of a change in a resource it depends on (a relay), and
    the spooler raises the table notification: one ``status_changed`` naming ``relay:T/HOST:PORT``
    when it goes failing, one when it answers again, with one log line each, and the row agrees."""
    dead, server = free_port(), smtp_server()
    daemon, client, watch = await started(daemons, TwoRelayDaemon(root, (dead, server.port), hold=0))
    relay = f"relay:relay/127.0.0.1:{dead}"
    await client.ok("submit", message=MESSAGE, recipients=["a@example.net"])
    failing = await changes_until(watch, becomes(relay, "failing"))
    (down,) = [e for e in failing if e["entry_id"] == relay]  # once, and before any other of its own
    assert down["resource_type"] == "relay" and down["was"] == "online"
    assert "cannot connect" in down["last_error"] and down["since"] is not None
    shown = await row(client, relay)
    assert shown["state"] == "failing" and shown["failing_since"] == down["since"]
    assert shown["status"] == ["failure"] and shown["transport"] == "transport:relay"

    with anyio.fail_after(30):  # delivered through the second relay
        while (await watch.line())["event"]["type"] != "delivered":
            pass
    smtp_server(port=dead)  # the first relay answers now; with no hold, the next attempt tries it first
    await client.ok("submit", message=MESSAGE, recipients=["b@example.net"])
    back = await changes_until(watch, becomes(relay, "online"))
    (up,) = [e for e in back if e["entry_id"] == relay]
    assert up["was"] == "failing" and up["last_error"] is None
    shown = await row(client, relay)
    assert shown["state"] == "online" and shown["status"] == ["available"] and shown["failing_since"] is None
    # one line each way, the mail log's, naming the relay as the delivery lines do (the row's change
    # wrote a second, "relay failing" / "relay available again", naming it relay/HOST:PORT)
    (went,) = await wait_records(daemon, "relay down", 1)
    (came,) = await wait_records(daemon, "relay up", 1)
    assert went["relay"] == came["relay"] == f"127.0.0.1:{dead}"
    assert records(daemon, "relay failing") == records(daemon, "relay available again") == []


async def test_a_listener_that_cannot_listen_is_failing_and_online_once_it_listens(
    root: Path, daemons: list[Any]
) -> None:
    """Seed: a row per resource, its state changing as things happen: a listener a reload adds on an
    address another process holds is failing with why (an event), online once a reload finds the
    address free (an event), and offline when a reload removes it (an event)."""
    daemon = ListenerDaemon(root, {"main": free_port()})
    _, client, watch = await started(daemons, daemon)
    assert (await row(client, "listener:main"))["state"] == "online"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon.listeners["clash"] = port
        daemon.write_config()
        await client.ok("reload")
        failing = await changes_until(watch, becomes("listener:clash", "failing"))
        (event,) = [e for e in failing if e["entry_id"] == "listener:clash"]
        assert f"cannot listen on 127.0.0.1:{port}" in event["last_error"] and event["was"] == "online"
        shown = await row(client, "listener:clash")
        assert shown["status"] == ["failure"] and shown["failing_since"] == event["since"]
    await client.ok("reload")  # the address is free now
    back = await changes_until(watch, becomes("listener:clash", "online"))
    assert [e["was"] for e in back if e["entry_id"] == "listener:clash"] == ["failing"]
    shown = await row(client, "listener:clash")
    assert shown["status"] == ["available"] and shown["failing_since"] is None
    socket.create_connection(("127.0.0.1", port), timeout=5).close()

    del daemon.listeners["main"]
    daemon.write_config()
    await client.ok("reload")
    await changes_until(watch, becomes("listener:main", "offline"))
    assert [r["entry_id"] for r in await client.ok("status") if r["resource_type"] == "listener"] == [
        "listener:clash"
    ]

"""Every state change is a status event on ``subscribe`` (issue #18 part 4; MAPI-NOTES "Status table",
conformance checklist item 24: a change of any row raises a table notification), for the rows whose
changes happen outside the spooler's own work: a relay of a transport with several, reported by the
transport itself (``Watched``), and an SMTP listener."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from tests.maillog.conftest import records
from tests.peers.ports import free_port
from tests.smtp.conftest import ServerFactory

from .conftest import TwoRelayDaemon
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
    lines = [r for r in records(daemon, "relay failing") + records(daemon, "relay available again")]
    assert [r["entry"] for r in lines] == [relay, relay]

"""The status table of a running daemon tells the truth (issue #18 part 4; MAPI-NOTES "Status table",
conformance checklist items 24 and 25): every row has its resource type, its methods, an entry id that
commands target, and a state that changes as things happen, each change a ``status_changed`` event."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from tests.control.conftest import Client
from tests.control.test_tools import ctl, run
from tests.peers.ports import free_port
from tests.smtp.conftest import ServerFactory

from .conftest import RelayDaemon, TwoRelayDaemon

Event = dict[str, Any]
MESSAGE = base64.b64encode(b"From: me@localhost\r\nTo: a@example.net\r\nSubject: s\r\n\r\nbody\r\n").decode()


async def started(daemons: list[Any], daemon: RelayDaemon) -> tuple[RelayDaemon, Client, Client]:
    """The daemon, a client, and a client subscribed to its events."""
    daemons.append(daemon)
    await daemon.start()
    watch = await daemon.client()
    await watch.stream.send(b'{"id": "w", "cmd": "subscribe"}\n')
    with anyio.fail_after(10):
        assert (await watch.line())["event"]["type"] == "subscribed"
    return daemon, await daemon.client(), watch


async def changes_until(watch: Client, last: Callable[[Event], bool]) -> list[Event]:
    """The ``status_changed`` events up to the first that ``last`` accepts."""
    seen: list[Event] = []
    with anyio.fail_after(30):
        while not seen or not last(seen[-1]):
            event = (await watch.line())["event"]
            if event["type"] == "status_changed":
                seen.append(event)
    return seen


def becomes(entry: str, state: str) -> Callable[[Event], bool]:
    return lambda e: e["entry_id"] == entry and e["state"] == state


async def row(client: Client, entry: str) -> dict[str, Any]:
    (only,) = await client.ok("status", entry=entry)
    return only  # type: ignore[no-any-return]


async def test_a_dead_relay_shows_failing_with_the_reason_and_online_once_it_answers(
    root: Path, daemons: list[Any], smtp_server: ServerFactory
) -> None:
    """Seed: STATUS_CODE is STATUS_FAILURE while the transport cannot do its work, with the reason in
    PR_STATUS_STRING, and every row change raises a table notification (checklist 24); a transport
    that works again is STATUS_AVAILABLE (not ``available`` while its relay is dead)."""
    port = free_port()  # nothing listens here yet
    _, client, watch = await started(daemons, RelayDaemon(root, port))
    await client.ok("submit", message=MESSAGE, recipients=["a@example.net"])
    failing = await changes_until(watch, becomes("transport:relay", "failing"))
    assert "cannot connect" in failing[-1]["last_error"] and failing[-1]["resource_type"] == "transport"
    assert len([e for e in failing if e["state"] == "failing"]) == 1  # once per change
    relay = await row(client, "transport:relay")
    assert relay["state"] == "failing" and "failure" in relay["status"] and "available" not in relay["status"]
    assert "cannot connect" in relay["last_error"] and relay["failing_since"] == failing[-1]["since"]

    with anyio.fail_after(30):  # the attempt over (its event comes once the message is unlocked)
        while (await watch.line())["event"]["type"] != "deferred":
            pass
    smtp_server(port=port)  # the relay answers now
    flushed = await client.ok("flush")
    assert flushed["sent"] == 1, flushed
    back = await changes_until(watch, becomes("transport:relay", "online"))
    (recovered,) = [e for e in back if e["entry_id"] == "transport:relay" and e["was"] == "failing"]
    assert recovered["last_error"] is None
    relay = await row(client, "transport:relay")
    assert relay["state"] == "online" and "available" in relay["status"] and relay["failing_since"] is None


async def test_a_flush_shows_flushing_on_the_rows_it_flushes_then_online(
    root: Path, daemons: list[Any], smtp_server: ServerFactory
) -> None:
    """Seed 000: while FlushQueues runs, the spooler's row and each flushed transport's show
    STATUS_OUTBOUND_FLUSH, cleared at the end (END_OUTBOUND_FLUSH); a flush of one transport
    (lpTargetTransport) flushes that one only."""
    server = smtp_server()
    daemon, client, watch = await started(daemons, RelayDaemon(root, server.port))
    await run(*ctl(daemon, "flush", "--entry", "transport:relay"), check=True)
    seen = await changes_until(watch, becomes("spooler", "online"))
    states = [(e["entry_id"], e["state"]) for e in seen if e["state"] in ("flushing", "online")]
    assert states[:2] == [("spooler", "flushing"), ("transport:relay", "flushing")]
    assert ("transport:relay", "online") in states and states[-1] == ("spooler", "online")
    assert all(e["entry_id"] != "transport:loopback" for e in seen)  # not the one it did not target
    assert (await row(client, "spooler"))["state"] in ("online", "active")


async def test_rows_have_type_methods_and_entry_ids_that_commands_target(
    root: Path, daemons: list[Any], smtp_server: ServerFactory
) -> None:
    """Seed: the status table has a row for the spooler, each store and each transport, with
    PR_RESOURCE_TYPE, PR_RESOURCE_METHODS (honest: what the resource itself does, checklist 25) and
    PR_ENTRYID, the id a client opens the row by to act on it (ValidateState, FlushQueues); an entry
    id that names no row is refused with a stable code."""
    server = smtp_server()
    daemon, client, watch = await started(daemons, RelayDaemon(root, server.port))
    rows = {r["entry_id"]: r for r in await client.ok("status")}
    assert set(rows) == {"spooler", "store:local", "transport:loopback", "transport:relay"}
    assert [rows[e]["resource_type"] for e in rows] == ["spooler", "store", "transport", "transport"]
    assert rows["spooler"]["methods"] == ["flush", "status"]
    assert rows["transport:relay"]["methods"] == ["status", "settings"]  # no flush of its own
    assert all(r["state"] == "online" and r["last_error"] is None for r in rows.values())

    shown = (await run(*ctl(daemon, "status", "--entry", "transport:relay"), check=True)).stdout.decode()
    assert shown.splitlines()[0].split() == [
        "ENTRY",
        "TYPE",
        "PROVIDER",
        "STATE",
        "STATUS",
        "METHODS",
        "COUNTERS",
    ]
    assert len(shown.splitlines()) == 2 and shown.splitlines()[1].split()[:4] == [
        "transport:relay", "transport", "smtp", "online"
    ]  # fmt: skip
    await run(*ctl(daemon, "offline", "--entry", "transport:relay"), check=True)
    await changes_until(watch, becomes("transport:relay", "offline"))
    assert (await row(client, "transport:relay"))["status"][0] == "offline"
    await client.ok("online", entry="transport:relay")
    await changes_until(watch, becomes("transport:relay", "online"))

    unknown = await client.call("status", entry="transport:nowhere")
    assert not unknown["ok"] and unknown["error"]["code"] == "unknown_entry"
    assert "transport:relay" in unknown["error"]["message"]  # it names the ones there are
    refused = await run(*ctl(daemon, "flush", "--entry", "store:local"))
    assert refused.returncode == 1 and b"no_support" in refused.stderr
    refused = await run(*ctl(daemon, "flush", "--entry", "nothing"))
    assert (
        refused.returncode == 1 and b"unknown_entry: no status row with entry id 'nothing'" in refused.stderr
    )


async def test_each_relay_of_a_transport_with_several_has_a_row(
    root: Path, daemons: list[Any], smtp_server: ServerFactory
) -> None:
    """Seed: a status row per resource a transport depends on, failing with its reason while the
    transport itself still works through another relay (STATUS_AVAILABLE)."""
    dead, server = free_port(), smtp_server()
    daemon, client, watch = await started(daemons, TwoRelayDaemon(root, (dead, server.port)))
    await client.ok("submit", message=MESSAGE, recipients=["a@example.net"])
    with anyio.fail_after(30):
        while (await watch.line())["event"]["type"] != "delivered":
            pass
    rows = {r["entry_id"]: r for r in await client.ok("status")}
    first, second = rows[f"relay:relay/127.0.0.1:{dead}"], rows[f"relay:relay/127.0.0.1:{server.port}"]
    assert first["state"] == "failing" and "cannot connect" in first["last_error"]
    assert first["transport"] == "transport:relay" and second["state"] == "online"
    assert rows["transport:relay"]["state"] in ("online", "active")
    shown = (await run(*ctl(daemon, "status"), check=True)).stdout.decode()
    assert f"  relay:relay/127.0.0.1:{dead}" in shown and f"relay:relay/127.0.0.1:{dead}: failing" in shown
    assert [r["entry_id"] for r in json.loads((await run(*ctl(daemon, "--json", "status"))).stdout)] == list(
        rows
    )

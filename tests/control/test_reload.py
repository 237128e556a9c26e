"""``spoolerctl reload`` / SIGHUP against a real daemon relaying to real SMTP servers (aiosmtpd): a
changed, added or removed transport takes effect for new attempts, an attempt in flight finishes on the
transport it began with (which is stopped after it), and a change that needs a restart makes reload exit
non-zero naming it."""

from __future__ import annotations

import base64
import json
import os
import signal
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.control.conftest import Daemon
from tests.control.test_tools import ctl, run
from tests.peers.ports import free_port
from tests.smtp.conftest import Handler


class StallingHandler(Handler):
    """RCPT for stall@… waits for ``release``; ``stalled`` says that it is waiting."""

    def __init__(self) -> None:
        super().__init__(stall_rcpt=threading.Event())
        self.stalled = threading.Event()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("stall@"):
            self.stalled.set()
        return await super().handle_RCPT(server, session, envelope, address, options)


class Relay:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.port = free_port()
        self.controller = Controller(
            handler, hostname="127.0.0.1", port=self.port, decode_data=False, enable_SMTPUTF8=False
        )

    async def received(self, count: int) -> list[str]:
        """Wait until ``count`` messages have arrived; their recipients."""

        def wait() -> None:
            with self.handler.arrived:
                assert self.handler.arrived.wait_for(lambda: len(self.handler.received) >= count, 30)

        await anyio.to_thread.run_sync(wait)
        return [r for message in self.handler.received for r in message.recipients]


@pytest.fixture
def relays() -> Iterator[Callable[[Handler | None], Relay]]:
    started: list[Relay] = []

    def start(handler: Handler | None = None) -> Relay:
        relay = Relay(handler or Handler())
        relay.controller.start()
        started.append(relay)
        return relay

    yield start
    for relay in started:
        if relay.handler.stall_rcpt is not None:
            relay.handler.stall_rcpt.set()
        relay.controller.stop()


class RelayingDaemon(Daemon):
    """A daemon whose transports after loopback are ``self.sections``."""

    sections = ""

    def transports(self) -> str:
        return self.sections

    _cursor = 0  # log lines before this one were read by an earlier ``logged``

    async def logged(self, event: str, **fields: Any) -> dict[str, Any]:
        """Wait for the next JSON log line with this event (and these fields), after the last one read."""

        def match(line: bytes) -> bool:
            try:
                entry = json.loads(line)
            except ValueError:
                return False
            return bool(entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items()))

        found = await self.log_line(match, self._cursor)
        self._cursor = found + 1
        return json.loads(self.log[found])  # type: ignore[no-any-return]

    async def submit(self, *recipients: str) -> str:
        client = await self.client()
        content = f"From: me@localhost\r\nTo: {', '.join(recipients)}\r\nSubject: t\r\n\r\nbody\r\n"
        result = await client.ok(
            "submit", message=base64.b64encode(content.encode()).decode(), recipients=list(recipients)
        )
        return str(result["id"])


def smtp(name: str, port: int) -> str:
    return f'[transports.{name}]\nprovider = "smtp"\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n'


@pytest.fixture
async def relaying() -> AsyncIterator[Callable[[str], Any]]:
    daemons: list[RelayingDaemon] = []

    async def start(transports: str) -> RelayingDaemon:
        root = Path(tempfile.mkdtemp(prefix="spd"))  # short: a socket path has at most 107 bytes
        os.chmod(root, 0o755)
        daemon = RelayingDaemon(root)
        daemon.sections = transports
        daemons.append(daemon)
        await daemon.start()
        return daemon

    yield start
    for daemon in daemons:
        for client in daemon.clients:
            await client.stream.aclose()
        if daemon.proc is not None and daemon.proc.returncode is None:
            assert await daemon.stop() == 0


async def reload(daemon: RelayingDaemon) -> tuple[int, dict[str, Any], str]:
    done = await run(*ctl(daemon, "--json", "reload"))
    return done.returncode, json.loads(done.stdout or b"{}"), done.stderr.decode()


async def queue_ids(daemon: RelayingDaemon) -> list[str]:
    rows = json.loads((await run(*ctl(daemon, "--json", "queue"), check=True)).stdout)
    return [row["id"] for row in rows]


async def test_a_changed_relay_takes_new_mail_while_mail_in_flight_finishes_on_the_old_one(
    relays: Callable[[Handler | None], Relay], relaying: Callable[[str], Any]
) -> None:
    stalling = StallingHandler()
    old, new = relays(stalling), relays(None)
    daemon: RelayingDaemon = await relaying(smtp("relay", old.port))
    in_flight = await daemon.submit("stall@remote.test")
    await anyio.to_thread.run_sync(stalling.stalled.wait, 30)  # the old relay holds its RCPT

    daemon.write_config()  # unchanged: nothing to apply
    unchanged = {"reloaded": True, "applied": [], "restart_needed": [], "not_applied": []}
    assert await reload(daemon) == (0, unchanged, "")
    daemon.sections = smtp("relay", new.port)
    daemon.write_config()
    code, answer, _ = await reload(daemon)
    assert (code, answer["applied"]) == (0, ["transports.relay changed (port)"])
    assert (await daemon.logged("transport changed", transport="relay"))["keys"] == ["port"]

    await daemon.submit("after@remote.test")
    assert await new.received(1) == ["after@remote.test"]  # a new attempt: the new relay
    assert old.handler.received == []
    assert in_flight in await queue_ids(daemon)  # still in flight on the old relay
    assert stalling.stall_rcpt is not None
    stalling.stall_rcpt.set()
    assert await old.received(1) == ["stall@remote.test"]  # finished where it began
    await daemon.logged("transport stopped", transport="relay", reason="replaced by a reload")
    assert await queue_ids(daemon) == []
    assert len(new.handler.received) == 1
    rows = json.loads((await run(*ctl(daemon, "--json", "status"), check=True)).stdout)
    [row] = [r for r in rows if r.get("entry_id") == "transport:relay"]
    assert row["counters"]["sent"] == 2  # the old relay's send and the new one's: a reload resets no count


async def test_sighup_adds_and_removes_transports_and_queued_mail_goes_to_the_new_one(
    relays: Callable[[Handler | None], Relay], relaying: Callable[[str], Any]
) -> None:
    down_port = free_port()  # nothing listens: the mail waits in the queue, deferred
    daemon: RelayingDaemon = await relaying(smtp("relay", down_port))
    waiting = await daemon.submit("waiting@remote.test")
    flushed = json.loads((await run(*ctl(daemon, "--json", "flush"), check=True)).stdout)
    assert flushed["sent"] == 0 and await queue_ids(daemon) == [waiting]

    backup = relays(None)
    daemon.sections = smtp("backup", backup.port)  # relay removed, backup added
    daemon.write_config()
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    reloaded = await daemon.logged("configuration reloaded")
    assert reloaded["applied"] == ["transports.backup added", "transports.relay removed"]
    await daemon.logged("transport stopped", transport="relay")
    status = json.loads((await run(*ctl(daemon, "--json", "status"), check=True)).stdout)
    assert [row["name"] for row in status if row["resource_type"] == "transport"] == ["loopback", "backup"]

    flushed = json.loads((await run(*ctl(daemon, "--json", "flush", "--force"), check=True)).stdout)
    assert flushed["sent"] == 1
    assert await backup.received(1) == ["waiting@remote.test"]  # routed to the transport now serving it
    await daemon.submit("fresh@remote.test")
    assert await backup.received(2) == ["waiting@remote.test", "fresh@remote.test"]


async def test_a_change_that_needs_a_restart_makes_reload_fail_and_name_it(
    relays: Callable[[Handler | None], Relay], relaying: Callable[[str], Any]
) -> None:
    first, second = relays(None), relays(None)
    daemon: RelayingDaemon = await relaying(smtp("relay", first.port))
    cfg = daemon.root / "spoolerd.toml"
    text = cfg.read_text().replace(str(daemon.root / "state"), str(daemon.root / "elsewhere"))
    cfg.write_text(text.replace(f"port = {first.port}", f"port = {second.port}") + "[lists]\n")
    done = await run(*ctl(daemon, "reload"))
    assert done.returncode == 4, done
    assert done.stdout.decode() == "reloaded: transports.relay changed (port)\n"
    assert done.stderr.decode() == (
        "spoolerctl: restart needed for: spooler.state_dir (not applied until spoolerd restarts)\n"
    )
    warning = await daemon.logged("restart needed to apply")
    assert warning["keys"] == ["spooler.state_dir"] and warning["level"] == "warning"
    code, answer, _ = await reload(daemon)  # still pending: said again, nothing else to apply
    assert (code, answer["applied"], answer["restart_needed"]) == (4, [], ["spooler.state_dir"])
    await daemon.submit("x@remote.test")
    assert await second.received(1) == ["x@remote.test"]  # what could be applied was
    assert not (daemon.root / "elsewhere").exists()  # what needs a restart was not


async def test_a_new_transport_that_cannot_start_changes_nothing(
    relays: Callable[[Handler | None], Relay], relaying: Callable[[str], Any]
) -> None:
    relay = relays(None)
    daemon: RelayingDaemon = await relaying(smtp("relay", relay.port))
    missing = daemon.root / "no-password"
    daemon.sections = smtp("relay", relay.port + 1) + f'username = "u"\npassword_file = "{missing}"\n'
    daemon.write_config()
    done = await run(*ctl(daemon, "reload"))
    assert done.returncode == 1
    assert f"transports.relay.password_file: cannot read {missing}".encode() in done.stderr
    await daemon.submit("still@remote.test")
    assert await relay.received(1) == ["still@remote.test"]  # the running transport stays


async def test_a_refused_reload_is_logged_once_whichever_way_it_was_asked(
    relaying: Callable[[str], Any],
) -> None:
    daemon: RelayingDaemon = await relaying("")
    cfg = daemon.root / "spoolerd.toml"
    cfg.write_text(cfg.read_text() + "\n[spooler.retry]\ninitial = -5\n")
    code, _, stderr = await reload(daemon)
    assert code == 1 and "spooler.retry.initial" in stderr
    asked = await daemon.logged("reload refused; keeping the running configuration")
    assert asked["level"] == "warning" and any("spooler.retry.initial" in p for p in asked["problems"])
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    signalled = await daemon.logged("reload refused; keeping the running configuration")
    assert signalled["problems"] == asked["problems"]  # the next such line: one per refused reload

"""``[spooler] workers = 2``: a delivery worker process beside the daemon (spoolerd/workers.py), both
claiming from one SQLite store and relaying to a real SMTP server (aiosmtpd). Every (message,
recipient) is delivered exactly once, by both processes; a killed worker is started again; a daemon
killed with -9 takes its worker with it, and its restart delivers the rest; SIGTERM stops both with
nothing left locked."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from spoolerd.config import parse_config
from spoolerd.events import QueueChanged
from spoolerd.plugins import PluginRegistry
from spoolerd.store import MessageStore, StoreContext
from tests.control.conftest import Daemon, serving, short_root
from tests.postgres.test_daemons import drained, expected_pairs, received_pairs, submit_all
from tests.smtp.conftest import Server, ServerFactory, smtp_server
from tests.webhooks.conftest import receiving

__all__ = ["smtp_server"]


class WorkersDaemon(Daemon):
    def __init__(
        self, root: Path, port: int, log_format: str = "json", more: str = "", relay: str = ""
    ) -> None:
        super().__init__(root)
        self.port = port  # the SMTP server it relays to
        self.db = root / "queue.db"
        self.log_format = log_format
        self.more = more  # more sections
        self.relay = relay  # more keys of [transports.relay]

    def write_config(self) -> Path:
        cfg = self.root / "spoolerd.toml"
        cfg.write_text(
            f'[spooler]\nstate_dir = "{self.root / "state"}"\nworkers = 2\nmax_in_flight = 16\n'
            'preprocessors = []\ndefault_store = "q"\n'
            f'[control]\nsocket = "{self.socket}"\n[log]\nformat = "{self.log_format}"\nlevel = "info"\n'
            f'[stores.q]\nprovider = "sqlite"\npath = "{self.db}"\n'
            f'[transports.relay]\nprovider = "smtp"\nhost = "127.0.0.1"\nport = {self.port}\n'
            f'tls = "none"\nhelo = "spool.test"\n{self.relay}\n'
            "[spooler.retry]\ninitial = 1\n"  # mail put off (an offline transport) is soon due again
            + self.more
        )
        return cfg

    def lines(self, since: int = 0) -> list[dict[str, object]]:
        out = []
        for line in self.log[since:]:
            if line.startswith(b"{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    raise AssertionError(repr(line)) from None
        return out

    async def logged_at(self, event: str, since: int = 0, **fields: object) -> int:
        """Wait for a JSON line from log line ``since`` on with this event and these fields (``worker=1``:
        the worker's line; the daemon's carry no ``worker``); its index."""

        def match(line: bytes) -> bool:
            entry = json.loads(line) if line.startswith(b"{") else {}
            return bool(entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items()))

        return await self.log_line(match, since)

    async def logged(self, event: str, since: int = 0, **fields: object) -> dict[str, object]:
        found: dict[str, object] = json.loads(self.log[await self.logged_at(event, since, **fields)])
        return found

    async def worker_pid(self, since: int = 0) -> int:
        """The pid of the worker started (its "worker running" line) after log line ``since``."""
        await self.log_line(lambda line: b'"worker running"' in line, since)
        started = [e for e in self.lines() if e.get("event") == "worker started"]
        assert started, "the daemon logs each worker it starts"
        pid = started[-1]["pid"]
        assert isinstance(pid, int)
        return pid


@dataclass
class Running:
    daemon: WorkersDaemon
    store: MessageStore  # a client of the daemon's store, as spoolerctl's or sendmail's would be
    server: Server  # where the daemon relays to
    worker: int  # the worker's pid


@pytest.fixture
async def running(tmp_path: Path, smtp_server: ServerFactory) -> AsyncIterator[Running]:
    """The daemon started with its worker, a client of its store, and the SMTP server it relays to."""
    server = smtp_server()
    d = WorkersDaemon(short_root(), server.port)
    store = PluginRegistry().open_store("sqlite", {"path": str(d.db)}, StoreContext("q", tmp_path))
    await store.start()
    await d.start()
    yield Running(d, store, server, await d.worker_pid())
    await store.stop()
    for client in d.clients:
        await client.stream.aclose()
    if d.proc is not None and d.proc.returncode is None:
        assert await d.stop() == 0


async def exited(pid: int) -> None:
    """Wait (10 s at most) until process ``pid`` has ended: its pidfd becomes readable."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # gone already

    try:
        ended = asyncio.Event()
        asyncio.get_running_loop().add_reader(fd, ended.set)
        try:
            with anyio.fail_after(10):
                await ended.wait()
        finally:
            asyncio.get_running_loop().remove_reader(fd)
    finally:
        os.close(fd)


def delivered_by(d: WorkersDaemon, since: int = 0) -> set[object]:
    """Which processes logged a delivery (from log line ``since`` on): None for the daemon, the worker's
    number for a worker."""
    return {e.get("worker") for e in d.lines(since) if e.get("status") == "sent"}


async def test_two_processes_deliver_each_recipient_exactly_once(running: Running) -> None:
    sent = await submit_all(running.store, 400, 2)
    await drained(running.store, 60)
    assert received_pairs(running.server.handler) == expected_pairs(sent)  # each exactly once
    assert delivered_by(running.daemon) == {None, 1}  # both the daemon and its worker delivered


async def test_a_killed_worker_is_started_again(running: Running) -> None:
    d = running.daemon
    since = len(d.log)
    os.kill(running.worker, signal.SIGKILL)
    await d.log_line(lambda line: b"worker exited; starting it again" in line, since)
    assert await d.worker_pid(since) != running.worker
    sent = await submit_all(running.store, 200, 1)
    await drained(running.store, 60)
    assert received_pairs(running.server.handler) == expected_pairs(sent)


async def test_a_daemon_killed_takes_its_worker_and_its_restart_delivers_the_rest(running: Running) -> None:
    d = running.daemon
    sent = await submit_all(running.store, 300, 1)
    assert d.proc is not None
    d.proc.kill()
    await d.proc.wait()
    await exited(running.worker)  # the kernel's parent-death signal: no orphan delivering on
    await d.start()  # takes back its own and its worker's leases at once
    await drained(running.store, 60)
    assert set(received_pairs(running.server.handler)) == set(expected_pairs(sent))  # nothing lost


async def test_sigterm_stops_both_and_leaves_nothing_locked(running: Running) -> None:
    await submit_all(running.store, 300, 1)
    assert await running.daemon.stop() == 0
    await exited(running.worker)
    locked = [(e.id, e.lock_owner) async for e in running.store.outgoing_queue() if e.lock_owner is not None]
    assert locked == []


def test_workers_with_a_rate_need_a_store_that_keeps_one_budget(tmp_path: Path) -> None:
    """A default store that is not ``SharedState`` (a third party's) would let each process spend its
    own budget: refused at start, for ``rate`` and ``relay_rates`` alike; the stores here are fine."""
    from spoolerd.assembly import _shared_budget_problems

    relay = {"provider": "smtp", "host": "relay.test", "rate": "10/1m", "relay_rates": {"relay.test": "5/1m"}}
    data: dict[str, Any] = {
        "spooler": {"workers": 2, "state_dir": str(tmp_path)},
        "transports": {"relay": relay},
    }
    config = parse_config(data, registry=PluginRegistry())
    problems = _shared_budget_problems(config, cast(MessageStore, object()))
    assert [p.split(":")[0] for p in problems] == ["transports.relay.rate", "transports.relay.relay_rates"]
    assert "keeps one budget for all ('sqlite' does not)" in problems[0]
    sqlite = PluginRegistry().open_store(
        "sqlite", {"path": str(tmp_path / "q.db")}, StoreContext("q", tmp_path)
    )
    assert _shared_budget_problems(config, sqlite) == []
    data["spooler"]["workers"] = 1
    assert _shared_budget_problems(parse_config(data, registry=PluginRegistry()), object()) == []  # type: ignore[arg-type]


async def test_the_daemon_and_its_worker_spend_one_rate_budget(
    tmp_path: Path, smtp_server: ServerFactory
) -> None:
    """``rate = "20/1m"``: once both processes have sent under it (one message at a time until each has),
    a burst of 30 more sends only what is left of the 20 and puts the rest off until its turn; each
    process spending its own budget would send up to 20 apiece."""
    server = smtp_server()
    d = WorkersDaemon(short_root(), server.port, relay='rate = "20/1m"')
    store = PluginRegistry().open_store("sqlite", {"path": str(d.db)}, StoreContext("q", tmp_path))
    await store.start()
    await d.start()
    try:
        await d.worker_pid()
        senders: set[object] = set()
        while senders != {None, 1}:
            assert len(server.handler.received) < 15, "the worker never took a message"
            since = len(d.log)
            await submit_all(store, 1, 1)
            senders.add((await d.logged("delivery", since, status="sent")).get("worker"))
        first = len(server.handler.received)
        since = len(d.log)
        await submit_all(store, 30, 1)
        await put_off(store)  # every message sent, or told to wait its turn
        assert len(server.handler.received) == 20
        waiting = [e for e in d.lines(since) if "waits its turn" in str(e.get("reply", ""))]
        assert len({e["queue_id"] for e in waiting}) == 30 - (20 - first)
    finally:
        await store.stop()
        for client in d.clients:
            await client.stream.aclose()
        assert await d.stop() == 0


async def test_the_daemon_sends_the_webhook_events_its_worker_wrote(
    tmp_path: Path, smtp_server: ServerFactory
) -> None:
    """A worker writes the events of its outcomes and sends none: the daemon's sender hears of the
    worker's commit and sends them, though the daemon itself writes nothing after it. One message at a
    time, each one's event awaited before the next, until the worker has delivered some."""
    server = smtp_server()
    root = short_root()
    (root / "hook.secret").write_text("s3cret\n")
    async with receiving() as receiver:
        url = f"http://127.0.0.1:{receiver.port}/hook"
        hook = f'[webhooks.app]\nurl = "{url}"\nsecret_file = "{root}/hook.secret"\n'
        d = WorkersDaemon(root, server.port, more=hook)
        store = PluginRegistry().open_store("sqlite", {"path": str(d.db)}, StoreContext("q", tmp_path))
        await store.start()
        await d.start()
        try:
            await d.worker_pid()
            by_worker: list[str] = []
            tries = 0
            while len(by_worker) < 3 and tries < 40:
                tries += 1
                since = len(d.log)
                await submit_all(store, 1, 1)  # each with Message-ID <pg0@test>: told apart by queue_id
                line = await d.logged("delivery", since, status="sent")
                queue_id = str(line["queue_id"])
                await receiver.until(lambda r, q=queue_id: any(e["queue_id"] == q for e in r.events()))
                if line.get("worker") == 1:
                    by_worker.append(queue_id)
            assert len(by_worker) >= 3, f"the worker delivered {len(by_worker)} of {tries}"
            events = [e for e in receiver.events() if e["queue_id"] in by_worker]
            assert [e["event"] for e in events] == ["delivered"] * len(by_worker)  # each once
        finally:
            await store.stop()
            for client in d.clients:
                await client.stream.aclose()
            assert await d.stop() == 0


@pytest.mark.parametrize(
    ("workers", "max_in_flight", "daemon_in_flight", "shares"),
    [
        (1, 64, None, (64, None)),
        (2, 64, None, (32, 32)),
        (3, 64, None, (21, 21)),
        (4, 2, None, (1, 1)),
        (2, 64, 2, (2, 62)),
        (3, 64, 2, (2, 31)),
        (4, 2, 2, (2, 1)),
        (1, 64, 2, (64, None)),
    ],
)
def test_max_in_flight_is_shared_out_among_the_processes(
    tmp_path: Path,
    workers: int,
    max_in_flight: int,
    daemon_in_flight: int | None,
    shares: tuple[int, int | None],
) -> None:
    """The daemon (woken first by what it takes in) must not fill every slot before its workers hear of
    it: each process delivers at most an equal share, or the daemon ``daemon_in_flight`` and each
    worker its share of the rest."""
    from spoolerd.assembly import build

    spooler: dict[str, object] = {
        "state_dir": str(tmp_path),
        "workers": workers,
        "max_in_flight": max_in_flight,
    }
    if daemon_in_flight is not None:
        spooler["daemon_in_flight"] = daemon_in_flight
    config = parse_config({"spooler": spooler}, registry=PluginRegistry())
    daemon, worker = shares
    assert build(config, PluginRegistry()).spooler.max_in_flight == daemon
    if worker is not None:
        assert build(config, PluginRegistry(), worker=True).spooler.max_in_flight == worker


async def test_a_reload_shares_out_the_new_max_in_flight(tmp_path: Path) -> None:
    from spoolerd.assembly import build
    from spoolerd.config import load_config
    from spoolerd.reconfigure import reload

    source = tmp_path / "spoolerd.toml"
    text = f'[spooler]\nstate_dir = "{tmp_path / "state"}"\nworkers = 2\nmax_in_flight = 64\n'
    await asyncio.to_thread(source.write_text, text + "daemon_in_flight = 8\n")
    daemon = build(load_config(str(source), PluginRegistry()), PluginRegistry(), source=str(source))
    worker = build(
        load_config(str(source), PluginRegistry()), PluginRegistry(), source=str(source), worker=True
    )
    assert (daemon.spooler.max_in_flight, worker.spooler.max_in_flight) == (8, 56)
    await asyncio.to_thread(source.write_text, text.replace("64", "20") + "daemon_in_flight = 4\n")
    await reload(daemon)
    await reload(worker)  # as a worker applies the daemon's reload (here read from the file)
    assert (daemon.spooler.max_in_flight, worker.spooler.max_in_flight) == (4, 16)


async def test_a_changed_number_of_workers_waits_for_a_restart(running: Running) -> None:
    d = running.daemon
    cfg = d.root / "spoolerd.toml"
    await asyncio.to_thread(cfg.write_text, cfg.read_text().replace("workers = 2", "workers = 3"))
    reloaded = await (await d.client()).ok("reload")  # spoolerctl reload: exit 4 naming the key
    assert (reloaded["applied"], reloaded["restart_needed"]) == ([], ["spooler.workers"])
    warned = await d.log_line(lambda line: b'"restart needed to apply"' in line)
    assert json.loads(d.log[warned])["keys"] == ["spooler.workers"]
    assert not any(e.get("event") == "worker started" and e.get("worker") == 2 for e in d.lines())


async def test_a_reload_keeps_the_running_workers_share_of_max_in_flight(tmp_path: Path) -> None:
    from spoolerd.assembly import build
    from spoolerd.config import load_config
    from spoolerd.reconfigure import reload

    source = tmp_path / "spoolerd.toml"
    text = f'[spooler]\nstate_dir = "{tmp_path / "state"}"\nworkers = 2\nmax_in_flight = 64\n'
    await asyncio.to_thread(source.write_text, text)
    worker = build(
        load_config(str(source), PluginRegistry()), PluginRegistry(), source=str(source), worker=True
    )
    await asyncio.to_thread(source.write_text, text.replace("workers = 2", "workers = 4"))
    result = await reload(worker)
    assert (result.applied, result.restart_needed) == ([], ["spooler.workers"])
    assert worker.config.spooler.workers == 2 and worker.spooler.max_in_flight == 32  # not 64 / 4


@pytest.mark.parametrize("asked", ["spoolerctl reload", "SIGHUP"])
async def test_a_reload_reaches_the_worker_however_it_was_asked(
    running: Running, smtp_server: ServerFactory, asked: str
) -> None:
    d = running.daemon
    moved = smtp_server()  # the relay's new port
    d.port = moved.port
    await asyncio.to_thread(d.write_config)
    since = len(d.log)
    if asked == "SIGHUP":
        assert d.proc is not None
        d.proc.send_signal(signal.SIGHUP)
    else:
        reloaded = await (await d.client()).ok("reload")
        assert reloaded["applied"] == ["transports.relay changed (port)"]
    applied = await d.logged("configuration reloaded", since, worker=None)  # the daemon's line
    assert applied["applied"] == ["transports.relay changed (port)"]
    await d.logged("configuration reloaded", since, worker=1)  # the worker was given it too
    sent = await submit_all(running.store, 300, 1)
    await drained(running.store, 60)
    assert received_pairs(moved.handler) == expected_pairs(sent)
    assert running.server.handler.received == []  # nothing through the old port, from either process
    assert delivered_by(d, since) == {None, 1}


async def test_a_worker_runs_on_the_daemons_configuration_not_the_files(
    running: Running, smtp_server: ServerFactory
) -> None:
    """A file edited but not reloaded (or a worker's own SIGHUP) does not reach a worker: one started
    again after the edit relays where the daemon does, until the daemon is reloaded."""
    d = running.daemon
    elsewhere = smtp_server()
    d.port = elsewhere.port
    await asyncio.to_thread(d.write_config)  # not reloaded
    since = len(d.log)
    os.kill(running.worker, signal.SIGHUP)
    await d.logged_at("reload ignored: a worker runs on the daemon's configuration; reload the daemon", since)
    os.kill(running.worker, signal.SIGKILL)
    assert await d.worker_pid(since) != running.worker
    sent = await submit_all(running.store, 300, 1)
    await drained(running.store, 60)
    assert received_pairs(running.server.handler) == expected_pairs(sent)  # where the daemon relays
    assert elsewhere.handler.received == []
    assert delivered_by(d, since) == {None, 1}  # the new worker delivered too
    assert not [e for e in d.lines(since) if e.get("event") == "configuration reloaded"]


async def put_off(store: MessageStore) -> None:
    """Wait until each message in the queue was tried at least once and put off (is due later than it
    was submitted): every process had its chance at them."""
    async with store.subscribe(accept=lambda e: isinstance(e, QueueChanged)) as events:
        with anyio.fail_after(30):
            while True:
                queue = [e async for e in store.outgoing_queue()]
                if all(e.due_at > e.client_submit_time + 0.5 for e in queue):
                    return
                await events.receive()
                events.pending()


async def test_offline_and_online_apply_to_the_worker_too(running: Running) -> None:
    d, relay = running.daemon, running.server.handler
    control = await d.client()
    since = len(d.log)
    await control.ok("offline", transport="relay")  # spoolerctl offline relay
    await d.logged("transport offline", since, worker=None, transport="relay")
    await d.logged("transport offline", since, worker=1, transport="relay")
    sent = await submit_all(running.store, 200, 1)
    await put_off(running.store)
    assert relay.received == []  # neither process sent through it

    since = len(d.log)
    await control.ok("online", transport="relay")
    await d.logged("transport online", since, worker=1, transport="relay")
    await drained(running.store, 60)
    assert received_pairs(relay) == expected_pairs(sent)
    assert delivered_by(d, since) == {None, 1}  # the worker delivers again


async def test_a_worker_started_again_starts_with_the_transports_offline(running: Running) -> None:
    d = running.daemon
    since = len(d.log)
    await (await d.client()).ok("offline", transport="relay")
    await d.logged("transport offline", since, worker=1, transport="relay")
    since = len(d.log)
    os.kill(running.worker, signal.SIGKILL)
    assert await d.worker_pid(since) != running.worker
    offline = await d.logged_at("transport offline", since, worker=1, transport="relay")
    assert offline < await d.logged_at("worker running", since, worker=1)  # before it claims anything
    await submit_all(running.store, 200, 1)
    await put_off(running.store)
    assert running.server.handler.received == []


async def test_a_workers_console_lines_say_which_worker_it_is(
    tmp_path: Path, smtp_server: ServerFactory
) -> None:
    server = smtp_server()
    d = WorkersDaemon(short_root(), server.port, log_format="console")
    store = PluginRegistry().open_store("sqlite", {"path": str(d.db)}, StoreContext("q", tmp_path))
    await store.start()
    try:
        async with serving(d):
            await d.log_line(lambda line: b"worker running" in line)
            sent = await submit_all(store, 400, 1)
            await drained(store, 60)
    finally:
        await store.stop()
    assert received_pairs(server.handler) == expected_pairs(sent)
    sent_lines = [line.decode().rstrip("\n") for line in d.log if b", status=sent (" in line]
    assert len(sent_lines) == 400
    by_worker = [line for line in sent_lines if line.endswith(", worker=1")]
    assert by_worker, "the worker delivered some, and its lines say so"
    daemons = [line for line in sent_lines if "worker=" not in line]
    assert len(by_worker) + len(daemons) == 400 and daemons  # the daemon's carry none

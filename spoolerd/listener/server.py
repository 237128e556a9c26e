"""SMTP listeners: bind ``[listeners.NAME]``, hand each connection a ``Session``, and put what they
accept into the store through the same calls as the control socket's ``submit`` (``outgoing_draft``,
then ``Submitter.submit_new``, one transaction): a 250 to DATA is sent only once the message is committed
and queued.

``Listeners`` runs them all inside the daemon: started with the control server, changed by ``reload``
(a new one bound, a removed one closed, a changed one rebuilt), and on SIGTERM closed in two phases: stop
accepting and hang up on idle sessions, let sessions in DATA finish within the deadline, close the rest.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from .. import maillog
from ..config import Config
from ..envelope import header_subject
from ..errors import BadAddress, InvalidArgument, ListenerUnavailable, SpoolerError, StoreError
from ..host import Host
from ..listener_config import ListenerSection, split_address
from ..outgoing import outgoing_draft
from ..resource_state import ResourceState
from ..retention import filing
from .check import tls_context
from .commands import Reply
from .credentials import Credentials, load_credentials
from .protocol import Session
from .rules import RecipientRules, message_size_limit
from .transaction import Transaction

__all__ = ["RELOAD_DRAIN", "ListenerContext", "Listeners", "Reconfigured", "drain"]

log = structlog.get_logger("spoolerd.listener")


class ListenerContext:
    """What every session of one listener shares: settings, TLS, credentials, counters, the store."""

    def __init__(self, name: str, settings: ListenerSection, daemon: Host, record: ResourceState) -> None:
        self.name = name
        self.record = record  # its status row's state, which outlives a rebuild
        self.settings = settings
        self.daemon = daemon
        self.hostname = settings.hostname or socket.getfqdn()
        self.tls_context = tls_context(settings) if settings.tls != "none" else None
        where = f"listeners.{name}.credentials_file"
        path = settings.credentials_file
        self.credentials: Credentials | None = None if path is None else load_credentials(path, where)
        self.counters: Counter[str] = Counter(accepted=0, refused=0)
        self.recipients = RecipientRules()
        self.sessions: set[Session] = set()
        self.in_data = 0
        self.data_done = asyncio.Event()
        self.closing = False
        self.last_error: str | None = None

    # sessions ----------------------------------------------------------------------------------

    def admit(self, session: Session) -> bool:
        if self.closing or len(self.sessions) >= self.settings.max_connections:
            self.counters["refused_connections"] += 1
            log.warning(
                "smtp connection refused: too many", listener=self.name, limit=self.settings.max_connections
            )
            return False
        self.sessions.add(session)
        self.counters["sessions"] += 1
        return True

    def release(self, session: Session) -> None:
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        log.info(
            "smtp session ended",
            listener=self.name,
            client=session.client_ip,
            tls=session.tls,
            user=session.user,
            accepted=session.accepted,
            refused=session.refused,
            seconds=round(time.monotonic() - session.opened, 3),
        )

    def allowed(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.settings.allowed_networks)

    def size_limit(self) -> int:
        return message_size_limit(self.daemon.config)

    def resolve(self, address: str) -> tuple[Reply | None, list[str]]:
        try:
            return None, self.recipients.addresses(self.daemon.config, address)
        except (BadAddress, InvalidArgument) as exc:
            return Reply(553, "5.1.3", f"bad recipient address: {exc}"[:200]), []

    @property
    def store_name(self) -> str:
        return self.settings.store or self.daemon.default_store

    def data_started(self) -> None:
        self.in_data += 1
        self.data_done.clear()

    def data_finished(self) -> None:
        self.in_data -= 1
        if not self.in_data:
            self.data_done.set()

    # the store ---------------------------------------------------------------------------------

    async def accept(self, session: Session, tx: Transaction, content: bytes) -> Reply:
        """Commit and queue the message, then say so. Run to its end even if the client hangs up
        meanwhile (``storing.to_the_end``): no half-made message (the client may have the message
        without the 250: a duplicate at worst, as RFC 5321 §6.1 allows, never a loss)."""
        name = self.store_name
        store = self.daemon.stores.get(name)
        if store is None:
            return self._failed(Reply(451, "4.3.0", "store not available"), f"no store named {name!r}")
        filed = filing(self.daemon.config.stores[name].sent_copies)
        try:
            draft = await outgoing_draft(
                store,
                content,
                tx.new_recipients(),
                sender=tx.mail.sender,
                subject=header_subject(content),
                sentmail=filed.sentmail,
                delete_after_submit=filed.delete_after_submit,
                dsn=tx.mail.dsn(tx.dsn),
            )
            # created and queued in one transaction: committed, or nothing at all; now the 250
            message_id = (await self.daemon.submitter.submit_new(name, draft)).message_id
        except (StoreError, OSError) as exc:
            return self._failed(Reply(451, "4.3.0", "Error: queue file write error, try again later"), exc)
        except SpoolerError as exc:
            return self._failed(Reply(554, "5.6.0", f"message refused: {exc}"[:200]), exc)
        except Exception as exc:  # a provider's raw error (sqlite3's "disk is full"): still the store's
            log.exception("store failed while accepting a message", listener=self.name, store=name)
            return self._failed(Reply(451, "4.3.0", "Error: queue file write error, try again later"), exc)
        self.counters["accepted"] += 1
        maillog.accepted(
            queue_id=message_id,
            store=name,
            content=content,
            sender=tx.mail.sender,
            recipients=len(tx.addresses),
            via="smtp",
            listener=self.name,
            client=session.client_ip,
            tls=session.tls,
            user=session.user,
        )
        return Reply(250, "2.0.0", f"Ok: queued as {message_id}")

    def _failed(self, reply: Reply, cause: object) -> Reply:
        self.counters["refused"] += 1
        self.last_error = str(cause)
        log.warning("smtp message not accepted", listener=self.name, reply=str(reply), error=str(cause))
        return reply

    def status_row(self) -> dict[str, Any]:
        return _row(self.record, self.last_error) | {
            "address": self.settings.address,
            "store": self.store_name,
            "status": ["available"] if not self.closing else ["stopping"],
            "counters": {"connections": len(self.sessions), **self.counters},  # its sessions are here
        }


def _row(record: ResourceState, last_error: str | None) -> dict[str, Any]:
    """A listener's row: its state (online, offline once closed, failing when it could not listen),
    since when, and its last error."""
    return {
        "entry_id": record.entry_id,
        "resource_type": "listener",
        "name": record.name,
        "state": record.state,
        "since": record.since,
        "failing_since": record.failing_since,
        "status": [record.availability],
        "methods": [],
        "counters": {},
        "last_error": last_error or record.last_error,
    }


class _Running:
    def __init__(self, context: ListenerContext, server: asyncio.AbstractServer) -> None:
        self.context = context
        self.server = server


class Listeners:
    """Every configured listener of a running daemon."""

    def __init__(self, daemon: Host) -> None:
        self.daemon = daemon
        self.running: dict[str, _Running] = {}
        self.records: dict[str, ResourceState] = {}  # each listener's row state (failing: cannot bind)
        self.changes = daemon.spooler.status  # each change of a row: one event, one log line
        self._changing = asyncio.Lock()  # one reload's listener changes at a time

    async def open_all(self) -> None:
        for name, section in self.daemon.config.listeners.items():
            try:
                await self._open(name, section)
            except OSError as exc:  # the address is taken, or the certificate unreadable: say which
                raise ListenerUnavailable(
                    f"listeners.{name}: cannot listen on {section.address}: {exc}"
                ) from exc

    async def _open(self, name: str, section: ListenerSection) -> None:
        record = self.records.get(name)
        if record is None:
            record = self.records[name] = ResourceState("listener", name)
        context = ListenerContext(name, section, self.daemon, record)
        host, port = split_address(section.address)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(BIND_TIMEOUT):  # a host name is looked up first
                server = await loop.create_server(
                    lambda: Session(context, loop),
                    host,
                    port,
                    ssl=context.tls_context if section.tls == "implicit" else None,
                    reuse_address=True,
                    backlog=max(128, section.max_connections),
                )
        except TimeoutError as exc:
            why = f"no address for {host!r} within {BIND_TIMEOUT:g} s (the resolver did not answer)"
            raise OSError(errno.ETIMEDOUT, why) from exc
        self.running[name] = _Running(context, server)
        self.changes.recover(record, BIND)  # listening (again)
        self.changes.set_online(record, True)
        log.info(
            "smtp listener started",
            listener=name,
            address=section.address,
            tls=section.tls,
            auth_mode=section.auth,
            store=context.store_name,
        )

    def rows(self) -> list[dict[str, Any]]:
        rows = [r.context.status_row() for r in self.running.values()]
        rows.extend(_row(r, None) for r in self._failing())  # configured, but it could not listen
        return rows

    def _failing(self) -> list[ResourceState]:
        return [r for name, r in self.records.items() if name not in self.running and BIND in r.problems]

    async def reconfigure(self, config: Config) -> Reconfigured:
        """Apply ``[listeners]`` from a reloaded config: stop listening on the removed ones, open the new
        and changed ones. A changed listener on another address goes on listening where it was until the
        new address is had (a reload onto an address in use must not leave the applications with no
        listener at all); on the same address, or on one another of ours holds now, the old one is
        closed first. Returns what could not be applied (a bind failure names the listener; status
        shows it as failure), for the reload's answer, and the listeners closed, whose sessions in DATA
        the caller lets finish (``drain``) without holding the answer back. One reload's changes at a
        time (each closed and opened by one of them only)."""
        async with self._changing:
            return await self._apply(config)

    async def _apply(self, config: Config) -> Reconfigured:
        """``reconfigure``'s changes: what could not be applied, and the listeners closed."""
        problems = []
        retired = []
        moving: dict[str, _Running] = {}  # changed listeners on another address: still listening
        ours = {r.context.settings.address for r in self.running.values()}  # addresses held now
        for name in list(self.running):
            section = config.listeners.get(name)
            settings = self.running[name].context.settings
            if section == settings and BIND in self.records[name].problems:
                self.changes.recover(self.records[name], BIND)  # moved back where it listens: not failing
            if section is not None and section.address != settings.address and section.address not in ours:
                moving[name] = self.running.pop(name)
            elif section is None or section != settings:  # onto an address one of ours holds: closed
                retired.append(self._stop_listening(name))  # first (listeners that trade addresses)
                log.info("smtp listener closed", listener=name, reason="reload")
        for record in self._failing():
            if record.name not in config.listeners:  # no longer configured: no longer failing
                self.changes.set_online(record, False)
                self.changes.recover(record, BIND)
        for name, section in config.listeners.items():
            if name in self.running:
                continue
            try:
                await self._open(name, section)
            except (OSError, SpoolerError) as exc:
                record = self.records.setdefault(name, ResourceState("listener", name))
                self.changes.fail(record, BIND, f"cannot listen on {section.address}: {exc}")
                self.changes.set_online(record, True)  # one change: failing (its one log line)
                problems.append(f"listeners.{name}: {exc}")
                if name in moving:  # keeps listening where it was, on its old settings
                    self.running[name] = moving.pop(name)
                continue
            if name in moving:  # its row is the new one's: online
                retired.append(self._close(moving.pop(name), offline=False))
                log.info("smtp listener closed", listener=name, reason="reload")
        return Reconfigured(problems, retired)

    async def stop(self, deadline: float) -> None:
        """SIGTERM: no new connections, idle sessions hung up on, sessions in DATA given ``deadline``."""
        retired = [self._stop_listening(name) for name in list(self.running)]
        for context in retired:
            await drain(context, deadline)

    def _stop_listening(self, name: str) -> ListenerContext:
        return self._close(self.running.pop(name))

    def _close(self, running: _Running, *, offline: bool = True) -> ListenerContext:
        context = running.context
        context.closing = True
        if offline:
            self.changes.set_online(context.record, False)
        running.server.close()
        for session in list(context.sessions):
            if not session.in_data and session.transport is not None:
                session.transport.write(b"421 4.3.2 Service shutting down\r\n")  # type: ignore[attr-defined]
                session.transport.close()
        return context


BIND = "bind"  # a listener's row's problem key: it could not listen
BIND_TIMEOUT = 10.0  # seconds a listener's address may take to be had (its host name looked up)
RELOAD_DRAIN = 30.0  # seconds a reload lets a replaced listener's sessions in DATA finish


@dataclass(frozen=True, slots=True)
class Reconfigured:
    """What a reload's listener changes came to: the problems (``listeners.NAME: why``) and the listeners
    closed, their sessions in DATA still to let finish (``drain``)."""

    problems: list[str]
    retired: list[ListenerContext]


async def drain(context: ListenerContext, deadline: float) -> None:
    """Let ``context``'s sessions in DATA finish within ``deadline`` seconds, then hang up on all."""
    if context.in_data:
        with anyio.move_on_after(deadline):
            await context.data_done.wait()
    for session in list(context.sessions):
        if session.transport is not None:
            session.transport.close()

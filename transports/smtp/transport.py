"""The SMTP transport (entry point ``smtp``): relays every ``SMTP`` recipient through one smarthost.

One ``send`` is one SMTP transaction on a pooled connection (more when there are more recipients than
``recipients_per_transaction``): what to write and what each reply means is ``plan.TransactionPlan``'s,
with no I/O; this module only moves its steps over the connection, each reply under its timeout. A
reused connection found dead at MAIL FROM (the relay timed it out) is replaced once, since nothing was
sent on it yet. Bcc header fields are removed from the content before it leaves.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Sequence
from typing import ClassVar

import anyio
import structlog
from pydantic import BaseModel

from spoolerd import maillog
from spoolerd.envelope import without_bcc
from spoolerd.message import Message, Recipient
from spoolerd.transport import Outcome, TransportContext
from transports.common.check import checked_tls
from transports.common.credentials import Credentials

from .channel import Channel, Connection, ConnectionLost
from .downgrade import Unchangeable, conform
from .plan import Batches, Result, Step, TransactionPlan
from .pool import ConnectionPool
from .replies import bad_address, requirements
from .session import SessionFailed, describe, open_session
from .settings import HELO_NAME, SmtpSettings, TlsMode
from .wire import SmtpProtocolError, crlf

__all__ = ["SmtpTransport"]

log = structlog.get_logger("spoolerd.transports.smtp")


def _local_name() -> str:
    name = socket.getfqdn()
    return name if HELO_NAME.match(name) else "localhost"


class SmtpTransport:
    Settings: ClassVar[type[BaseModel]] = SmtpSettings

    def __init__(self, settings: SmtpSettings, context: TransportContext) -> None:
        self.name = context.name
        self.address_types: frozenset[str] | None = frozenset({"SMTP"})
        self.settings = settings
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        self.peer = f"{host}:{settings.effective_port}"
        self.destination_concurrency = settings.destination_concurrency
        self._credentials = Credentials(settings)
        self._context: ssl.SSLContext | None = None
        self._helo = settings.helo or "localhost"
        self._debug = False  # debug lines wanted: looked up once a transaction, not once a reply
        self.pool = ConnectionPool(
            self._open,
            size=settings.pool_size,
            per_connection=settings.messages_per_connection,
            idle_timeout=settings.idle_timeout,
            peer=self.peer,
        )

    def check(self) -> None:
        """Secrets resolve and TLS files load (``spoolerd check-config``, ``run`` and a reload call it)."""
        tls = None if self.settings.tls is TlsMode.NONE else self.settings
        self._context = checked_tls(self._credentials, tls)

    async def start(self) -> None:
        self.check()
        if self.settings.helo is None:
            self._helo = await anyio.to_thread.run_sync(_local_name)

    async def stop(self) -> None:
        self.pool.close()

    def destination(self, recipient: Recipient) -> str:
        return self.peer

    async def _open(self) -> Connection:
        conn = await open_session(self.settings, self._credentials, self._context, self._helo, self.peer)
        log.debug(
            "connection opened",
            transport=self.name,
            relay=self.peer,
            tls=self.settings.tls.value,
            authenticated=self._credentials.username is not None,
            extensions=sorted(conn.extensions),
        )
        return conn

    async def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        sender = message.sender
        if bad_address(sender):
            return [
                Outcome.failed("the envelope sender has characters SMTP cannot carry", None, "5.1.7")
            ] * len(recipients)
        outcomes: list[Outcome] = []
        todo: list[int] = []
        for i, r in enumerate(recipients):
            if not r.address or bad_address(r.address):
                outcomes.append(Outcome.failed("the address has characters SMTP cannot carry", None, "5.1.3"))
            else:
                outcomes.append(Outcome.not_me())  # replaced below
                todo.append(i)
        if todo:
            addresses = [recipients[i].address for i in todo]
            try:  # lines over 998 octets re-encoded, whatever the relay: a strict one refuses them
                wire = conform(crlf(without_bcc(message.content)), eight_bit=True)
            except Unchangeable as exc:
                results = [Outcome.failed(str(exc), None, exc.status)] * len(todo)
            else:
                results = await self._deliver_in_batches(sender, addresses, wire)
            for i, outcome in zip(todo, results, strict=True):
                outcomes[i] = outcome
        return outcomes

    async def _deliver_in_batches(self, sender: str, rcpts: list[str], wire: bytes) -> list[Outcome]:
        batches = Batches(len(rcpts), self.settings.recipients_per_transaction)
        while (batch := batches.next()) is not None:
            addresses = [rcpts[i] for i in batch]
            batches.done(batch, await self._deliver(sender, addresses, wire))
        return batches.outcomes()

    async def _deliver(self, sender: str, rcpts: list[str], wire: bytes) -> Result:
        need = requirements(wire, sender, rcpts)
        while True:
            try:
                conn = await self.pool.acquire()
            except SessionFailed as exc:
                return Result([exc.outcome] * len(rcpts))
            reused = conn.sent > 0
            conn.sent += 1
            self._debug = maillog.debugging()
            if reused and self._debug:
                log.debug("connection reused", transport=self.name, relay=self.peer, transaction=conn.sent)
            plan = TransactionPlan(
                sender,
                rcpts,
                wire,
                need,
                extensions=conn.extensions,
                pipelining=conn.pipelining,
                peer=self.peer,
                reused=reused,
            )
            done = Result([])
            try:
                done = await self._transaction(conn.channel, plan)
            finally:
                self.pool.release(conn, reusable=done.reusable)
            if not done.stale:  # else a fresh connection next, which is never stale
                return done

    async def _transaction(self, channel: Channel, plan: TransactionPlan) -> Result:
        """The plan's steps on the wire: its writes, and each reply it waits for, under its timeout."""
        step = plan.start()
        while isinstance(step, Step):
            try:
                if step.write:
                    channel.write(step.write)
                if step.payload:
                    await channel.drain()
                code, text = await self._reply(channel, step)
            except (ConnectionLost, SmtpProtocolError, OSError, TimeoutError) as exc:
                diagnostic, status = describe(exc, f"waiting for the reply to {step.expect}")
                return plan.broken(diagnostic, status, lost=isinstance(exc, ConnectionLost))
            step = plan.receive(code, text)
        return step

    async def _reply(self, channel: Channel, step: Step) -> tuple[int, str]:
        ready = channel.next_reply()  # pipelined replies mostly arrive together: no wait, no timer
        if ready is None:
            limit = self.settings.data_timeout if step.payload else self.settings.command_timeout
            async with asyncio.timeout(limit):
                ready = await channel.reply()
        if self._debug:  # replies in a transaction only: the AUTH exchange is over before it begins
            log.debug(
                "reply", relay=self.peer, command=step.expect, code=ready[0], text=" ".join(ready[1].split())
            )
        return ready

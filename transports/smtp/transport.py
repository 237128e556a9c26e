"""The SMTP transport (entry point ``smtp``): relays every ``SMTP`` recipient through one smarthost.

One ``send`` is one SMTP transaction on a pooled connection: MAIL FROM with the options the message
needs (SIZE, BODY=8BITMIME, SMTPUTF8), one RCPT TO per recipient, DATA once if any recipient was
accepted. Each recipient's outcome comes from its own RCPT reply, or from the DATA reply if it was
accepted. A reused connection found dead at MAIL FROM (the relay timed it out) is replaced once, since
nothing was sent on it yet. Bcc header fields are removed from the content before it leaves.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from .pool import ConnectionPool
from .replies import (
    Reply,
    Requirements,
    bad_address,
    expected,
    mail_options,
    no_reply,
    outcome_for,
    requirements,
)
from .session import SessionFailed, describe, open_session
from .settings import HELO_NAME, SmtpSettings, TlsMode
from .wire import SmtpProtocolError, crlf, data_payload

__all__ = ["SmtpTransport"]

log = structlog.get_logger("spoolerd.transports.smtp")


@dataclass(slots=True)
class _Transaction:
    """What one transaction did: an outcome per recipient, whether the connection may carry another,
    and the recipients refused with 452 (too many recipients), to be sent in a next transaction."""

    outcomes: list[Outcome]
    reusable: bool = False
    too_many: set[int] = field(default_factory=set)


class _Stale(Exception):
    """A reused connection was gone before the relay answered anything in this transaction."""


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
        """At most ``recipients_per_transaction`` recipients a transaction; those a transaction refused
        with 452 (too many recipients, RFC 5321 §4.5.3.1.10) while it accepted others go in the next one
        at once, not back to the queue."""
        results: list[Outcome | None] = [None] * len(rcpts)
        waiting = list(range(len(rcpts)))
        limit = self.settings.recipients_per_transaction
        while waiting:
            batch, waiting = waiting[:limit], waiting[limit:]
            addresses = [rcpts[i] for i in batch]
            done = await self._deliver(sender, addresses, wire, requirements(wire, sender, addresses))
            for position, outcome in zip(batch, done.outcomes, strict=True):
                results[position] = outcome
            if done.too_many and len(done.too_many) < len(batch):
                waiting = [batch[j] for j in sorted(done.too_many)] + waiting
        return _all(results)

    async def _deliver(self, sender: str, rcpts: list[str], wire: bytes, need: Requirements) -> _Transaction:
        while True:
            try:
                conn = await self.pool.acquire()
            except SessionFailed as exc:
                return _Transaction([exc.outcome] * len(rcpts))
            reused = conn.sent > 0
            conn.sent += 1
            self._debug = maillog.debugging()
            if reused and self._debug:
                log.debug("connection reused", transport=self.name, relay=self.peer, transaction=conn.sent)
            done = _Transaction([])
            try:
                done = await self._transaction(conn, sender, rcpts, wire, need, reused=reused)
            except _Stale:
                continue  # a fresh connection next: the loop ends because a new one is never stale
            finally:
                self.pool.release(conn, reusable=done.reusable)
            return done

    async def _transaction(
        self,
        conn: Connection,
        sender: str,
        rcpts: list[str],
        wire: bytes,
        need: Requirements,
        *,
        reused: bool,
    ) -> _Transaction:
        """Outcomes per recipient, and whether the connection may carry another message. With
        PIPELINING, MAIL, every RCPT and DATA go out in one write and their replies are read in order."""
        if need.eight_bit and not need.smtputf8 and "8bitmime" not in conn.extensions:
            wire, need = _seven_bit(wire, need, sender, rcpts)
        options = mail_options(need, conn.extensions, self.peer)
        if isinstance(options, Outcome):
            return _Transaction([options] * len(rcpts), True)  # refused before anything was sent
        encoding = "utf-8" if need.smtputf8 else "ascii"
        mail = b"MAIL FROM:<" + sender.encode(encoding) + b">" + b"".join(b" " + o.encode() for o in options)
        rcpt_lines = [b"RCPT TO:<" + rcpt.encode(encoding) + b">\r\n" for rcpt in rcpts]
        channel, pipelined = conn.channel, conn.pipelining
        results: list[Outcome | None] = [None] * len(rcpts)
        doing, answered = "MAIL FROM", False
        try:
            channel.write(mail + b"\r\n" + (b"".join(rcpt_lines) + b"DATA\r\n" if pipelined else b""))
            reply = await self._reply(channel, doing)
            answered = True
            if reused and reply.code == 421:  # how a relay closes a connection it finds idle, too
                raise _Stale
            if not expected(reply):
                if pipelined:  # the relay still answers each RCPT and the DATA: keep in step
                    await self._skip(channel, len(rcpts))
                return _Transaction(
                    [outcome_for(reply, self.peer)] * len(rcpts), await self._reset(conn, reply)
                )
            doing = "RCPT TO"
            accepted, sound, too_many = await self._recipients(channel, rcpt_lines, pipelined, results)
            doing = "DATA"
            if not pipelined:
                if not accepted:
                    return _Transaction(_all(results), sound and await self._reset(conn), too_many)
                channel.write(b"DATA\r\n")
            reply = await self._reply(channel, doing)
            if reply.code != 354:
                for i in accepted:
                    results[i] = outcome_for(reply, self.peer)
                return _Transaction(_all(results), sound and await self._reset(conn, reply))
            if not accepted:  # 354 although every recipient was refused: end the empty message
                channel.write(b".\r\n")
                await self._reply(channel, doing)
                return _Transaction(_all(results), False, too_many)
            channel.write(data_payload(wire))
            await channel.drain()
            doing = "end of DATA"
            reply = await self._reply(channel, doing, self.settings.data_timeout)
            final = outcome_for(reply, self.peer)
            for i in accepted:
                results[i] = final
            reusable = sound and (reply.code == 250 or await self._reset(conn, reply))
            return _Transaction(_all(results), reusable, too_many if reply.code == 250 else set())
        except (ConnectionLost, SmtpProtocolError, OSError, TimeoutError) as exc:
            if reused and not answered and isinstance(exc, ConnectionLost):
                raise _Stale from None
            diagnostic, status = describe(exc, f"waiting for the reply to {doing}")
            lost = no_reply(diagnostic, self.peer, status)
            return _Transaction([r if r is not None else lost for r in results])

    async def _recipients(
        self, channel: Channel, lines: list[bytes], pipelined: bool, results: list[Outcome | None]
    ) -> tuple[list[int], bool, set[int]]:
        """The RCPT TO replies: who was accepted, whether every reply was one SMTP allows there (else
        the connection is not trusted again), and who was refused with 452 (too many recipients). The
        refused get their outcome in ``results``."""
        accepted, sound, too_many = [], True, set()
        for i, line in enumerate(lines):
            if not pipelined:
                channel.write(line)
            reply = await self._reply(channel, "RCPT TO")
            if expected(reply):
                accepted.append(i)
                continue
            results[i] = outcome_for(reply, self.peer)
            sound = sound and reply.code >= 400
            if reply.code == 452:
                too_many.add(i)
        return accepted, sound, too_many

    async def _reply(self, channel: Channel, command: str, limit: float | None = None) -> Reply:
        ready = channel.next_reply()  # pipelined replies mostly arrive together: no wait, no timer
        if ready is None:
            async with asyncio.timeout(limit or self.settings.command_timeout):
                ready = await channel.reply()
        if self._debug:  # replies in a transaction only: the AUTH exchange is over before it begins
            log.debug(
                "reply", relay=self.peer, command=command, code=ready[0], text=" ".join(ready[1].split())
            )
        return Reply(ready[0], ready[1], command)

    async def _skip(self, channel: Channel, rcpts: int) -> None:
        """Read the pipelined replies after a refused MAIL; a 354 (a broken relay) gets an empty body."""
        for _ in range(rcpts):
            await self._reply(channel, "RCPT TO")
        if (await self._reply(channel, "DATA")).code == 354:
            channel.write(b".\r\n")
            await self._reply(channel, "end of DATA")

    async def _reset(self, conn: Connection, reply: Reply | None = None) -> bool:
        """RSET after a transaction that did not end in 250; the connection is kept only if it worked.
        After a reply SMTP does not allow there (``reply``), the connection is not trusted again."""
        if reply is not None and reply.code < 400:
            return False
        try:
            conn.channel.write(b"RSET\r\n")
            return (await self._reply(conn.channel, "RSET")).code == 250
        except (ConnectionLost, SmtpProtocolError, OSError, TimeoutError):
            return False


def _seven_bit(wire: bytes, need: Requirements, sender: str, rcpts: list[str]) -> tuple[bytes, Requirements]:
    """RFC 6152 §3: 8-bit content converted to 7 bits for a relay without 8BITMIME, as Postfix does;
    signed content stays as it is, and ``mail_options`` then refuses it (5.6.3)."""
    try:
        wire = conform(wire, eight_bit=False)
    except Unchangeable:
        return wire, need
    return wire, requirements(wire, sender, rcpts)


def _all(results: list[Outcome | None]) -> list[Outcome]:
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]

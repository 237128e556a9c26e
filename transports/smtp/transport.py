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
from typing import ClassVar

import anyio
import structlog
from pydantic import BaseModel

from spoolerd import maillog
from spoolerd.envelope import without_bcc
from spoolerd.message import Message, Recipient
from spoolerd.transport import Outcome, TransportContext
from transports.common.credentials import Credentials

from .channel import Channel, Connection, ConnectionLost
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
from .session import SessionFailed, describe, open_session, tls_context
from .settings import HELO_NAME, SmtpSettings
from .wire import SmtpProtocolError, crlf, data_payload

__all__ = ["SmtpTransport"]

log = structlog.get_logger("spoolerd.transports.smtp")


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

    async def start(self) -> None:
        self._credentials.check()
        self._context = tls_context(self.settings)
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
            wire = crlf(without_bcc(message.content))
            results = await self._deliver(sender, addresses, wire, requirements(wire, sender, addresses))
            for i, outcome in zip(todo, results, strict=True):
                outcomes[i] = outcome
        return outcomes

    async def _deliver(self, sender: str, rcpts: list[str], wire: bytes, need: Requirements) -> list[Outcome]:
        while True:
            try:
                conn = await self.pool.acquire()
            except SessionFailed as exc:
                return [exc.outcome] * len(rcpts)
            reused = conn.sent > 0
            conn.sent += 1
            self._debug = maillog.debugging()
            if reused and self._debug:
                log.debug("connection reused", transport=self.name, relay=self.peer, transaction=conn.sent)
            reusable = False
            try:
                results, reusable = await self._transaction(conn, sender, rcpts, wire, need, reused=reused)
            except _Stale:
                continue  # a fresh connection next: the loop ends because a new one is never stale
            finally:
                self.pool.release(conn, reusable=reusable)
            return results

    async def _transaction(
        self,
        conn: Connection,
        sender: str,
        rcpts: list[str],
        wire: bytes,
        need: Requirements,
        *,
        reused: bool,
    ) -> tuple[list[Outcome], bool]:
        """Outcomes per recipient, and whether the connection may carry another message. With
        PIPELINING, MAIL, every RCPT and DATA go out in one write and their replies are read in order."""
        options = mail_options(need, conn.extensions, self.peer)
        if isinstance(options, Outcome):
            return [options] * len(rcpts), True  # refused before anything was sent
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
                return [outcome_for(reply, self.peer)] * len(rcpts), await self._reset(conn, reply)
            accepted, sound = [], True  # sound: no reply outside what SMTP allows
            doing = "RCPT TO"
            for i, line in enumerate(rcpt_lines):
                if not pipelined:
                    channel.write(line)
                reply = await self._reply(channel, doing)
                if expected(reply):
                    accepted.append(i)
                else:
                    results[i] = outcome_for(reply, self.peer)
                    sound = sound and reply.code >= 400
            doing = "DATA"
            if not pipelined:
                if not accepted:
                    return _all(results), sound and await self._reset(conn)
                channel.write(b"DATA\r\n")
            reply = await self._reply(channel, doing)
            if reply.code != 354:
                for i in accepted:
                    results[i] = outcome_for(reply, self.peer)
                return _all(results), sound and await self._reset(conn, reply)
            if not accepted:  # 354 although every recipient was refused: end the empty message
                channel.write(b".\r\n")
                await self._reply(channel, doing)
                return _all(results), False
            channel.write(data_payload(wire))
            await channel.drain()
            doing = "end of DATA"
            reply = await self._reply(channel, doing, self.settings.data_timeout)
            final = outcome_for(reply, self.peer)
            for i in accepted:
                results[i] = final
            return _all(results), sound and (reply.code == 250 or await self._reset(conn, reply))
        except (ConnectionLost, SmtpProtocolError, OSError, TimeoutError) as exc:
            if reused and not answered and isinstance(exc, ConnectionLost):
                raise _Stale from None
            diagnostic, status = describe(exc, f"waiting for the reply to {doing}")
            lost = no_reply(diagnostic, self.peer, status)
            return [r if r is not None else lost for r in results], False

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


def _all(results: list[Outcome | None]) -> list[Outcome]:
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]

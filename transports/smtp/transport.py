"""The SMTP transport (entry point ``smtp``): relays every ``SMTP`` recipient through one smarthost.

One ``send`` is one SMTP transaction on a pooled connection: MAIL FROM with the options the message
needs (SIZE, BODY=8BITMIME, SMTPUTF8), one RCPT TO per recipient, DATA once if any recipient was
accepted. Each recipient's outcome comes from its own RCPT reply, or from the DATA reply if it was
accepted. A reused connection found dead at MAIL FROM (the relay timed it out) is replaced once, since
nothing was sent on it yet. Bcc header fields are removed from the content before it leaves.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from typing import ClassVar

import aiosmtplib
import anyio
from pydantic import BaseModel

from spoolerd.envelope import without_bcc
from spoolerd.message import Message, Recipient
from spoolerd.transport import Outcome, TransportContext

from .credentials import Credentials
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
    wire_content,
)
from .session import Connection, SessionFailed, describe, open_session, tls_context
from .settings import HELO_NAME, SmtpSettings

__all__ = ["SmtpTransport"]


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
        self.pool = ConnectionPool(
            self._open,
            size=settings.pool_size,
            per_connection=settings.messages_per_connection,
            idle_timeout=settings.idle_timeout,
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
        return await open_session(self.settings, self._credentials, self._context, self._helo, self.peer)

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
            wire = wire_content(without_bcc(message.content))
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
        """Outcomes per recipient, and whether the connection may carry another message."""
        options = mail_options(need, conn.extensions, self.peer)
        if isinstance(options, Outcome):
            return [options] * len(rcpts), True  # refused before anything was sent
        encoding = "utf-8" if need.smtputf8 else "ascii"
        results: list[Outcome | None] = [None] * len(rcpts)
        doing = "MAIL FROM"
        try:
            args = [b"FROM:<" + sender.encode(encoding) + b">", *(o.encode() for o in options)]
            reply = await self._command(conn, "MAIL FROM", b"MAIL", *args)
            if reused and reply.code == 421:  # the relay closes idle connections this way too
                raise _Stale
            if not expected(reply):
                return [outcome_for(reply, self.peer)] * len(rcpts), await self._reset(conn, reply)
            accepted = []
            sound = True  # no reply outside what SMTP allows
            for i, rcpt in enumerate(rcpts):
                doing = "RCPT TO"
                reply = await self._command(conn, doing, b"RCPT", b"TO:<" + rcpt.encode(encoding) + b">")
                if expected(reply):
                    accepted.append(i)
                else:
                    results[i] = outcome_for(reply, self.peer)
                    sound = sound and reply.code >= 400
            if not accepted:
                return [r for r in results if r is not None], sound and await self._reset(conn)
            doing = "DATA"
            try:
                response = await conn.client.data(wire, timeout=self.settings.data_timeout)
                reply = Reply(response.code, response.message, "end of DATA")
            except aiosmtplib.SMTPDataError as exc:
                reply = Reply(exc.code, exc.message, "DATA")  # refused at DATA or at the end of it
                sound = sound and reply.code >= 400
            final = outcome_for(reply, self.peer)
            for i in accepted:
                results[i] = final
            return [r for r in results if r is not None], sound and (
                reply.code == 250 or await self._reset(conn, reply)
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            if reused and doing == "MAIL FROM" and isinstance(exc, aiosmtplib.SMTPServerDisconnected):
                raise _Stale from None
            diagnostic, status = describe(exc, f"waiting for the reply to {doing}")
            lost = no_reply(diagnostic, self.peer, status)
            return [r if r is not None else lost for r in results], False

    async def _command(self, conn: Connection, name: str, *args: bytes) -> Reply:
        response = await conn.client.execute_command(*args, timeout=self.settings.command_timeout)
        return Reply(response.code, response.message, name)

    async def _reset(self, conn: Connection, reply: Reply | None = None) -> bool:
        """RSET after a transaction that did not end in 250; the connection is kept only if it worked.
        After a reply SMTP does not allow there (``reply``), the connection is not trusted again."""
        if reply is not None and reply.code < 400:
            return False
        try:
            response = await conn.client.execute_command(b"RSET", timeout=self.settings.command_timeout)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            return False
        return response.code == 250

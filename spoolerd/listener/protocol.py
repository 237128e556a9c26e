"""One SMTP session: aiosmtpd's connection handling and AUTH, with the commands that decide what is
accepted (EHLO, MAIL, RCPT, DATA) written here so that every refusal carries an enhanced status code and
nothing is acknowledged before the store has it.

The session's facts (client, TLS, user) and the settings come from its ``Intake``; the store work is
``Intake.accept``. Per connection, aiosmtpd makes one instance of ``Session``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import Counter
from typing import Any, Protocol

import structlog
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, syntax

from ..listener_config import ListenerSection
from ..wiretext import has_control
from .commands import CommandRefused, Reply, parse_mail, parse_rcpt, too_large
from .content import Trace, normalize, received_field
from .credentials import Credentials
from .data import read_data
from .storing import to_the_end
from .transaction import Transaction

__all__ = ["Intake", "Session"]

log = structlog.get_logger("spoolerd.listener")
logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's own lines: every command, per peer

_LINE_LIMIT = 1001  # StreamReader chunk, not a limit: longer lines are read in pieces (as Postfix does)


class Intake(Protocol):
    """What a session needs from where it runs: a network listener (``ListenerContext``) or
    ``sendmail -bs`` (``StdioIntake``)."""

    name: str
    settings: ListenerSection
    hostname: str
    tls_context: ssl.SSLContext | None
    credentials: Credentials | None
    counters: Counter[str]
    closing: bool

    def admit(self, session: Session) -> bool: ...
    def release(self, session: Session) -> None: ...
    def data_started(self) -> None: ...
    def data_finished(self) -> None: ...
    def allowed(self, ip: str) -> bool: ...
    def size_limit(self) -> int: ...
    def resolve(self, address: str) -> tuple[Reply | None, list[str]]: ...
    async def accept(self, session: Session, tx: Transaction, content: bytes) -> Reply: ...


class Session(SMTP):
    line_length_limit = _LINE_LIMIT

    def __init__(self, context: Intake, loop: asyncio.AbstractEventLoop) -> None:
        settings = context.settings
        super().__init__(
            None,
            data_size_limit=None,  # DATA is read here (smtp_DATA), with the configured limit
            enable_SMTPUTF8=True,
            hostname=context.hostname,
            ident="spoolerd",
            tls_context=context.tls_context if settings.tls == "starttls" else None,
            timeout=settings.command_timeout,
            auth_require_tls=settings.tls == "starttls" and not settings.loopback_only,
            authenticator=lambda *args: AuthResult(success=True, auth_data=args[-1]),  # see _verified
            loop=loop,
        )
        self._auth_required = settings.auth == "required"
        self.context = context
        self.transaction: Transaction | None = None
        self.refused_connection = False
        self.accepted = 0
        self.refused = 0
        self.client_ip = "unknown"
        self.tls: str | None = None
        self.user: str | None = None
        self.opened = time.monotonic()
        self.in_data = False  # between DATA and its final reply: a shutdown lets it finish
        self._trusted: bool | None = None  # the client's address is in allowed_networks (asked once)
        self._held = bytearray()  # replies to pipelined MAIL / RCPT / RSET not yet written (see push)
        self._deadline = 0.0  # when a silent client is hung up on (see _reset_timeout)

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        if first and not self.context.admit(self):
            self.refused_connection = True
            transport.write(b"421 4.7.0 Too many connections, try again later\r\n")  # type: ignore[attr-defined]
            transport.close()
            return
        super().connection_made(transport)
        if first:
            peer = transport.get_extra_info("peername")
            self.client_ip = str(peer[0]) if peer else "unknown"
        self._note_tls(transport)

    def _note_tls(self, transport: asyncio.BaseTransport) -> None:
        obj = transport.get_extra_info("ssl_object")
        if isinstance(obj, ssl.SSLObject | ssl.SSLSocket):
            cipher = obj.cipher()
            self.tls = f"{obj.version()} with cipher {cipher[0] if cipher else 'unknown'}"

    def connection_lost(self, error: Exception | None) -> None:
        if self.refused_connection:
            return
        self.context.release(self)
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self.refused_connection:
            return False
        return super().eof_received()

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd's, without a new timer for every command: the deadline moves, and the one timer, if
        it fires before the deadline, is set again for what is left (a timer made and one cancelled per
        command were 4% of a session's CPU). A deadline sooner than the timer's sets it sooner."""
        self._deadline = self.loop.time() + (duration or self._timeout_duration)
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or handle.when() > self._deadline:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(self._deadline, self._timer_fired)

    def _timer_fired(self) -> None:
        if self.loop.time() < self._deadline:
            self._timeout_handle = self.loop.call_at(self._deadline, self._timer_fired)
        else:
            self._timeout_cb()

    def _timeout_cb(self) -> None:
        """A silent client (RFC 5321 §4.5.3.2 timeouts): say why before hanging up, as Postfix does."""
        log.info("smtp client timed out", listener=self.context.name, client=self.client_ip,
                 in_data=self.in_data)  # fmt: skip
        if self.transport is not None and not self.in_data:
            self.transport.write(b"421 4.4.2 Error: timeout exceeded\r\n")  # type: ignore[attr-defined]
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    def _set_rset_state(self) -> None:
        super()._set_rset_state()  # type: ignore[no-untyped-call]
        self.transaction = None

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, asyncio.IncompleteReadError) and self.transport is not None:
            self.transport.close()  # the input ended (sendmail -bs): nothing more to answer
            return "421 4.4.2 Error: end of input"
        log.error("smtp session failed", listener=self.context.name, client=self.client_ip, error=repr(error))
        return "451 4.3.0 Error: internal error, try again later"

    async def reply(self, reply: Reply, *, grouped: bool = False) -> None:
        """``grouped``: a reply to MAIL, RCPT or RSET, which may wait for the next command's (see push)."""
        await self.push(str(reply), grouped=grouped)

    async def push(self, status: str | bytes, *, grouped: bool = False) -> None:
        """Write a reply line. RFC 2920 §3.1: while the client's next command is already here, a reply
        to MAIL, RCPT or RSET (the commands that may sit inside a pipelined group) is held and written
        with the next one, as Postfix does: one write and one packet for a whole MAIL, RCPT..., DATA
        group. Any other reply writes what is held with it, so nothing waits while the client does."""
        self._held += (status.encode() if isinstance(status, str) else status) + b"\r\n"
        if grouped and b"\n" in self._reader._buffer:  # type: ignore[attr-defined]
            return
        self._writer.write(bytes(self._held))
        self._held.clear()
        await self._writer.drain()

    # ------------------------------------------------------------------ greeting

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        if await self._bad_helo(hostname, "HELO"):
            return
        await super().smtp_HELO(hostname)

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        if await self._bad_helo(hostname, "EHLO"):
            return
        assert self.session is not None
        self._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = hostname
        lines = [self.hostname, "PIPELINING"]
        limit = self.context.size_limit()
        lines.append(f"SIZE {limit}" if limit else "SIZE")
        lines += ["8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "DSN"]
        if self.tls_context and not self._tls_protocol:
            lines.append("STARTTLS")
        if self.context.credentials is not None and (not self._auth_require_tls or self._tls_protocol):
            lines.append("AUTH PLAIN LOGIN")
        lines.append("HELP")
        for line in lines[:-1]:
            await self.push(f"250-{line}")
        await self.push(f"250 {lines[-1]}")

    async def _bad_helo(self, hostname: str | None, verb: str) -> bool:
        if (
            not hostname
            or has_control(hostname)
            or " " in hostname
            or not hostname.isascii()
            or len(hostname) > 255
        ):
            await self.reply(Reply(501, "5.5.4", f"Syntax: {verb} hostname (printable, no spaces)"))
            return True
        return False

    # ------------------------------------------------------------------ AUTH

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        if self.context.credentials is None:  # not offered: aiosmtpd's hook (see _verified) takes any login
            await self.push("503 5.5.1 Error: authentication not enabled")  # Postfix's words
            return
        await super().smtp_AUTH(arg)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verified(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verified(await super().auth_LOGIN(_, args))

    async def _verified(self, result: AuthResult) -> AuthResult:
        """aiosmtpd's authenticator hook is synchronous; the (deliberately slow) hash check runs in a
        thread here instead, so a login never stalls the other sessions."""
        credentials = self.context.credentials
        data = result.auth_data
        if not result.success or credentials is None or not isinstance(data, LoginPassword):
            return result
        user = data.login.decode("utf-8", "replace")
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(None, credentials.check, user, data.password):
            self.user = user
            log.info(
                "smtp client authenticated", listener=self.context.name, client=self.client_ip, user=user
            )
            return AuthResult(success=True, auth_data=user)
        log.warning(
            "smtp authentication failed",
            listener=self.context.name,
            client=self.client_ip,
            user=user[:64] if user.isprintable() else "?",
        )
        return AuthResult(success=False, handled=False)  # aiosmtpd answers 535 5.7.8

    # ------------------------------------------------------------------ transaction

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("MAIL"):
            return
        if self.transaction is not None:
            await self.reply(Reply(503, "5.5.1", "Error: nested MAIL command"))
            return
        try:
            mail = parse_mail(arg, size_limit=self.context.size_limit(), utf8_offered=True)
        except CommandRefused as exc:
            await self._refuse(exc.reply, grouped=True)
            return
        self.transaction = Transaction(mail)
        await self.reply(Reply(250, "2.1.0", "Ok"), grouped=True)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("RCPT"):
            return
        tx = self.transaction
        if tx is None:
            await self.reply(Reply(503, "5.5.1", "Error: need MAIL command"))
            return
        try:
            rcpt = parse_rcpt(arg, smtputf8=tx.mail.smtputf8)
        except CommandRefused as exc:
            await self._refuse(exc.reply, grouped=True)
            return
        if len(tx.recipients) >= self.context.settings.max_recipients:
            await self._refuse(Reply(452, "4.5.3", "Error: too many recipients"), grouped=True)
            return
        if not self.authenticated_or_trusted():
            await self._refuse(self._relay_refusal(), grouped=True)
            return
        refusal, addresses = self.context.resolve(rcpt.address)
        if refusal is not None:
            await self._refuse(refusal, grouped=True)
            return
        tx.recipients.append(rcpt)
        for a in addresses:
            if a not in tx.dsn:  # each address once, with the DSN parameters of the first RCPT naming it
                tx.addresses.append(a)
                tx.dsn[a] = rcpt.dsn
        await self.reply(Reply(250, "2.1.5", "Ok"), grouped=True)

    def authenticated_or_trusted(self) -> bool:
        if self.user is not None:
            return True
        if self._trusted is None:
            self._trusted = self.context.allowed(self.client_ip)
        return self._trusted

    def _relay_refusal(self) -> Reply:
        if self.context.credentials is not None:
            return Reply(530, "5.7.0", "Authentication required to relay")
        return Reply(554, "5.7.1", "Relay access denied")

    async def _refuse(self, reply: Reply, *, grouped: bool = False) -> None:
        self.refused += 1
        self.context.counters["refused"] += 1
        await self.reply(reply, grouped=grouped)

    @syntax("RSET")
    async def smtp_RSET(self, arg: str) -> None:
        if arg:
            await self.reply(Reply(501, "5.5.4", "Syntax: RSET"))
            return
        self._set_rset_state()
        await self.reply(Reply(250, "2.0.0", "Ok"), grouped=True)

    @syntax("NOOP [ignored]")
    async def smtp_NOOP(self, arg: str) -> None:
        await self.reply(Reply(250, "2.0.0", "Ok"))

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str) -> None:
        await self.reply(Reply(252, "2.0.0", "Send some mail, I'll try my best"))

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        tx = self.transaction
        if tx is None or not tx.recipients:
            await self.reply(Reply(503, "5.5.1", "Error: need RCPT command"))
            return
        if arg:
            await self.reply(Reply(501, "5.5.4", "Syntax: DATA"))
            return
        self.in_data = True
        self.context.data_started()
        try:
            await self._data(tx)
        finally:
            self.in_data = False
            self.context.data_finished()
        if self.context.closing and self.transport is not None:
            self.transport.close()  # shutting down: this session's DATA was let finish, no more

    async def _data(self, tx: Transaction) -> None:
        self._reset_timeout(self.context.settings.data_timeout)  # the whole transfer, not per line
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        limit = self.context.size_limit()
        content, size = await read_data(self._reader, limit, restore=self.line_length_limit)
        self._reset_timeout()
        self._set_rset_state()
        if content is None:
            try:
                too_large(size, limit)
            except CommandRefused as exc:
                await self._refuse(exc.reply)
            return
        await self.reply(await self._accept(tx, content))

    async def _accept(self, tx: Transaction, content: bytes) -> Reply:
        assert self.session is not None
        trace = Trace(
            helo=self.session.host_name or "",
            client_ip=self.client_ip,
            hostname=self.hostname,
            esmtp=self.session.extended_smtp,
            tls=self.tls,
            user=self.user,
            smtputf8=tx.mail.smtputf8,
            recipient=tx.addresses[0] if len(tx.addresses) == 1 else None,
        )
        content = received_field(trace, time.time()) + normalize(content)
        reply = await to_the_end(self, self.context.accept(self, tx, content))
        if reply.code == 250:
            self.accepted += 1
        else:
            self.refused += 1
        return reply

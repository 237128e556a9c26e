"""One IMAP connection, logged in, with a deadline on every command (aioimaplib underneath).

The connection itself (STARTTLS included, which aioimaplib lacks) and every other use of aioimaplib's
internals live in ``adapter``. A lost
connection ends any command or IDLE wait at once instead of at its timeout. Errors are ``ImapError``s
whose text names the server and the step, never a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import aioimaplib
from aioimaplib.aioimaplib import STOP_WAIT_SERVER_PUSH, Response

from spoolerd.errors import TransportError
from transports.common.credentials import Credentials

from . import adapter
from .adapter import Client, IdleRefused, StartTlsRefused
from .settings import AuthMethod, ImapSettings, TlsMode
from .wire import (
    Fetched,
    SelectInfo,
    last_line,
    mailbox_arg,
    parse_fetch,
    parse_search,
    parse_select,
    response_code,
)

__all__ = ["ImapError", "LoginRefused", "Session", "open_session"]

T = TypeVar("T")


class ImapError(TransportError):
    """The server could not be reached or did not do what was asked."""

    code = "imap_error"


class LoginRefused(ImapError):
    """The server refused the credentials: retrying at once would only be refused again."""

    code = "login_refused"


class CommandFailed(ImapError):
    """A tagged NO or BAD; ``response`` is the server's text with its code."""

    def __init__(self, message: str, result: str, text: bytes) -> None:
        super().__init__(message)
        self.result = result
        self.response = response_code(text)


def describe(exc: BaseException) -> str:
    if isinstance(exc, ImapError):
        return str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not verified: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failure: {exc.reason or exc}"
    if isinstance(exc, TimeoutError | aioimaplib.CommandTimeout):
        return "timed out"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc) or type(exc).__name__


class Session:
    """A logged-in connection; each method raises ImapError (or CommandFailed) on failure."""

    def __init__(self, client: Client, settings: ImapSettings, lost: asyncio.Event) -> None:
        self._client = client
        self.settings = settings
        self.peer = settings.peer
        self._lost = lost
        self.idle_refused = False

    @property
    def alive(self) -> bool:
        return not self._lost.is_set()

    def has(self, capability: str) -> bool:
        return bool(self._client.has_capability(capability))

    async def _run(self, step: str, work: Awaitable[T], limit: float | None = None) -> T:
        """``work`` within ``limit`` (the command timeout), ended at once if the connection is lost."""
        task = asyncio.ensure_future(work)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait(
                {task, lost},
                timeout=limit or self.settings.command_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except BaseException:
            # cancelled mid-command: aioimaplib would still answer the server's next continuation
            # with whatever literal comes next, so the connection is never used again
            self.close()
            raise
        finally:
            lost.cancel()
            if not task.done():
                task.cancel()
        if task not in done:
            self.close()
            why = "connection lost" if lost in done else "timed out"
            raise ImapError(f"{self.peer}: {why} during {step}")
        try:
            return task.result()
        except StartTlsRefused as exc:
            self.close()
            raise ImapError(str(exc)) from exc
        except (aioimaplib.AioImapException, OSError, ValueError) as exc:
            self.close()
            # not chained: aioimaplib's CommandTimeout holds its command, a LOGIN's password included,
            # and a traceback would print it; describe() says what happened without it
            raise ImapError(f"{self.peer}: {step} failed: {describe(exc)}") from None

    async def _ok(self, step: str, work: Awaitable[Response]) -> Response:
        response = await self._run(step, work)
        if response.result != "OK":
            text = last_line(response)
            code = response_code(text)
            raise CommandFailed(f"{self.peer}: {step} refused: {code.text}", response.result, text)
        return response

    async def select(self, mailbox: str) -> SelectInfo:
        response = await self._ok(f"SELECT {mailbox}", self._client.select(mailbox_arg(mailbox)))
        return parse_select(response.lines)

    async def uids(self) -> list[int]:
        response = await self._ok("UID SEARCH", self._client.uid_search("ALL", charset=None))
        return parse_search(response.lines)

    async def fetch(self, uids: str, items: str) -> list[Fetched]:
        response = await self._ok("UID FETCH", self._client.uid("fetch", uids, items))
        return parse_fetch(response.lines)

    async def add_flags(self, uids: str, flags: str) -> None:
        await self._ok("UID STORE", self._client.uid("store", uids, "+FLAGS.SILENT", f"({flags})"))

    async def expunge(self, uids: str) -> None:
        if self.has("UIDPLUS"):
            await self._ok("UID EXPUNGE", self._client.uid("expunge", uids))
        else:
            await self._ok("EXPUNGE", self._client.expunge())

    async def move(self, uids: str, mailbox: str) -> None:
        """UID MOVE (RFC 6851): only when ``has("MOVE")``."""
        await self._ok(f"UID MOVE to {mailbox}", self._client.uid("move", uids, mailbox_arg(mailbox)))

    async def copy(self, uids: str, mailbox: str) -> None:
        await self._ok(f"UID COPY to {mailbox}", self._client.uid("copy", uids, mailbox_arg(mailbox)))

    async def append(self, content: bytes, mailbox: str, flags: str | None = None) -> Response:
        """APPEND; the response is returned whatever it says (the caller maps NO to an outcome)."""
        return await self._run(
            f"APPEND to {mailbox}", self._client.append(content, mailbox=mailbox_arg(mailbox), flags=flags)
        )

    async def create(self, mailbox: str) -> None:
        await self._ok(f"CREATE {mailbox}", self._client.create(mailbox_arg(mailbox)))

    async def search_header(self, name: str, value: str) -> list[int]:
        response = await self._ok(
            "UID SEARCH HEADER",
            self._client.uid_search("HEADER", name, aioimaplib.quoted(value), charset=None),
        )
        return parse_search(response.lines)

    @property
    def idles(self) -> bool:
        """Whether waiting for mail uses IDLE: wanted, offered, and not refused on this connection."""
        return self.settings.idle and self.has("IDLE") and not self.idle_refused

    async def wait_for_mail(self, seconds: float, wake: asyncio.Event) -> str:
        """IDLE on the selected mailbox until new mail ("push"), ``wake`` is set ("wake") or ``seconds``
        pass ("timeout"). Without IDLE it just waits for ``wake`` or the time. A server that refuses IDLE
        (NO or BAD) gets "refused" at once; the connection stays usable and ``idles`` turns False."""
        if not self.idles:
            try:
                await asyncio.wait_for(wake.wait(), seconds)
            except TimeoutError:
                return "timeout"
            return "wake"
        loop = asyncio.get_running_loop()
        try:
            idle = await self._run("IDLE", adapter.idle_start(self._client, seconds + 60))
        except IdleRefused:
            self.idle_refused = True
            return "refused"
        deadline = loop.time() + seconds
        reason = "timeout"
        while (remaining := deadline - loop.time()) > 0:
            push = asyncio.ensure_future(self._client.wait_server_push(timeout=remaining))
            waker = asyncio.ensure_future(wake.wait())
            lost = asyncio.ensure_future(self._lost.wait())
            try:
                done, _ = await asyncio.wait({push, waker, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (push, waker, lost):
                    task.cancel()
            if lost in done:
                raise ImapError(f"{self.peer}: connection lost while idling")
            if waker in done:
                reason = "wake"
                break
            if push in done:
                try:
                    lines: Sequence[bytes] = push.result()
                except TimeoutError:
                    break
                if lines == STOP_WAIT_SERVER_PUSH:
                    break
                if any(bytes(line).endswith(b"EXISTS") for line in lines):
                    reason = "push"
                    break
        self._client.idle_done()
        await self._run("IDLE DONE", idle)
        return reason

    async def logout(self) -> None:
        with contextlib.suppress(ImapError):
            await self._run("LOGOUT", self._client.logout(), limit=5)
        self.close()

    def close(self) -> None:
        adapter.close(self._client)
        self._lost.set()


async def open_session(
    settings: ImapSettings, credentials: Credentials, context: ssl.SSLContext | None
) -> Session:
    """Connect, (STARTTLS,) read the greeting and log in, within ``connect_timeout``."""
    peer = settings.peer
    lost = asyncio.Event()

    def on_lost(exc: Exception | None) -> None:
        lost.set()

    client = Client(
        settings.host,
        settings.effective_port,
        on_lost,
        limit=settings.connect_timeout,
        context=context if settings.tls is not TlsMode.NONE else None,
        starttls=settings.tls is TlsMode.STARTTLS,
    )
    session = Session(client, settings, lost)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.connect_timeout

    def left() -> float:
        return max(0.001, deadline - loop.time())

    try:
        try:
            await session._run("connect", adapter.connection(client), left())
            # aioimaplib's own wait_hello_from_server cannot be cancelled while the server withholds
            # its CAPABILITY answer (a lock held across it): wait on the state, as _run can walk away
            await session._run("greeting", adapter.greeting(client), left())
        except ImapError as exc:
            raise ImapError(f"{peer}: could not connect: {str(exc).removeprefix(peer + ': ')}") from exc
        await _login(session, client, settings, credentials, left)
    except BaseException:
        session.close()
        raise
    adapter.set_command_timeout(client, settings.command_timeout)
    return session


async def _login(
    session: Session,
    client: Client,
    settings: ImapSettings,
    credentials: Credentials,
    left: Callable[[], float],
) -> None:
    assert settings.username is not None
    user = settings.username
    try:
        if settings.auth is AuthMethod.XOAUTH2:
            token = await credentials.token()
            response = await session._run("AUTHENTICATE XOAUTH2", client.xoauth2(user, token), left())
            if response.result != "OK":  # maybe just expired: one more try with a fresh token
                credentials.forget_token()
                token = await credentials.token(renew=True)
                response = await session._run("AUTHENTICATE XOAUTH2", client.xoauth2(user, token), left())
        else:
            password = credentials.password()
            if not password.isascii():
                raise LoginRefused(f"{session.peer}: the password is not ASCII, which LOGIN cannot send")
            response = await session._run("LOGIN", client.login(aioimaplib.quoted(user), password), left())
    except ImapError:
        raise
    except TransportError as exc:  # a credentials file, variable or command that failed
        raise LoginRefused(f"{session.peer}: credentials: {exc}") from exc
    if response.result != "OK":
        text = last_line(response)
        raise LoginRefused(f"{session.peer}: login as {user} refused: {response_code(text).text}")
    if settings.auth is AuthMethod.XOAUTH2:  # LOGIN's answer carries them; AUTHENTICATE's may not
        await session._run("CAPABILITY", adapter.capabilities(client), left())

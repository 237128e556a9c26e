"""One SMTP session up to the point where mail can be sent: connect, greeting, EHLO, STARTTLS, AUTH.

Every step has its timeout, and every way it can go wrong becomes ``SessionFailed`` carrying the
outcome for the recipients that were waiting (deferred, with no reply code: the relay, not the
message, is the problem). Credentials never appear in a diagnostic.
"""

from __future__ import annotations

import ssl

import aiosmtplib

from spoolerd.errors import TransportError
from spoolerd.transport import Outcome
from transports.common.credentials import Credentials

from .channel import Connection
from .replies import Reply, no_reply
from .settings import AuthMethod, RelayAddress, SmtpSettings, TlsMode
from .wire import SmtpProtocolError

__all__ = ["SessionFailed", "describe", "open_session"]


class SessionFailed(TransportError):
    """The session could not be set up; ``outcome`` is what every waiting recipient gets."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.diagnostic)
        self.outcome = outcome


def describe(exc: BaseException, doing: str) -> tuple[str, str]:
    """A diagnostic and an enhanced status code for a failure with no usable reply."""
    cause = exc.__cause__ if isinstance(exc, aiosmtplib.SMTPConnectError) and exc.__cause__ else exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"TLS certificate not verified while {doing}: {cause.verify_message}", "4.7.5"
    if isinstance(cause, ssl.SSLError):
        return f"TLS failure while {doing}: {cause.reason or cause}", "4.7.5"
    if isinstance(exc, TimeoutError):
        return f"timed out while {doing}", "4.4.2"
    if isinstance(exc, aiosmtplib.SMTPConnectError) or isinstance(cause, ConnectionRefusedError):
        detail = getattr(cause, "strerror", None) or str(cause)
        return f"cannot connect: {detail}", "4.4.1"
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError):
        return f"connection lost while {doing}", "4.4.2"
    if isinstance(exc, SmtpProtocolError):
        return f"bad reply while {doing}: {exc}", "4.5.0"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"bad reply while {doing}: {exc.code} {exc.message}", "4.5.0"
    return f"{type(exc).__name__} while {doing}: {exc}", "4.4.2"


async def open_session(
    settings: SmtpSettings,
    credentials: Credentials,
    context: ssl.SSLContext | None,
    helo: str,
    relay: RelayAddress,
) -> Connection:
    """A connected, greeted, (encrypted,) (authenticated) session with ``relay``, or ``SessionFailed``."""
    implicit = settings.tls is TlsMode.IMPLICIT
    peer = relay.peer
    client = aiosmtplib.SMTP(
        hostname=relay.host,
        port=relay.port,
        local_hostname=helo,
        timeout=settings.command_timeout,
        use_tls=implicit,
        start_tls=False,
        tls_context=context if implicit else None,
    )
    progress = ["connecting"]  # what was under way, for the diagnostic
    try:
        await _setup(client, settings, credentials, context=context, relay=relay, progress=progress)
    except SessionFailed:
        client.close()
        raise
    except TransportError as exc:  # a secret could not be read
        client.close()
        raise SessionFailed(no_reply(f"credentials: {exc}", peer, "4.7.0")) from exc
    except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
        client.close()
        diagnostic, status = describe(exc, progress[-1])
        raise SessionFailed(no_reply(diagnostic, peer, status)) from exc
    except BaseException:
        client.close()
        raise
    return Connection(client)  # aiosmtplib's part is done: the channel takes the connection over


async def _setup(
    client: aiosmtplib.SMTP,
    settings: SmtpSettings,
    credentials: Credentials,
    *,
    context: ssl.SSLContext | None,
    relay: RelayAddress,
    progress: list[str],
) -> None:
    peer = relay.peer
    try:
        await client.connect(timeout=settings.connect_timeout)
    except aiosmtplib.SMTPConnectResponseError as exc:
        raise _refused(Reply(exc.code, exc.message, "the greeting"), peer) from exc
    progress.append("greeting (EHLO)")
    await _ehlo(client, peer)
    encrypted = settings.tls is TlsMode.IMPLICIT
    if settings.tls in (TlsMode.STARTTLS, TlsMode.OPPORTUNISTIC):
        if client.supports_extension("starttls"):
            progress.append("starting TLS")
            assert context is not None
            response = await client.starttls(
                server_hostname=relay.host, tls_context=context, timeout=settings.connect_timeout
            )
            if response.code != 220:
                raise _refused(Reply(response.code, response.message, "STARTTLS"), peer)
            progress.append("greeting (EHLO) after STARTTLS")
            await _ehlo(client, peer)
            encrypted = True
        elif settings.tls is TlsMode.STARTTLS:
            raise SessionFailed(no_reply("TLS is required, but was not offered by the relay", peer, "4.7.4"))
    if credentials.username is not None:
        if not encrypted and settings.tls is not TlsMode.NONE:
            raise SessionFailed(
                no_reply("refusing to send credentials over a connection without TLS", peer, "4.7.0")
            )
        progress.append("authenticating")
        await _authenticate(client, settings, credentials, peer)


def _refused(reply: Reply, peer: str, generic: str | None = None) -> SessionFailed:
    """The relay answered but would not go on: deferred, like a lost connection (the reply is kept).
    ``generic``: the status to give when the reply has no enhanced code of its own."""
    status = reply.status
    if generic is not None and status.endswith(".0.0"):
        status = generic
    if not status.startswith("4."):
        status = "4" + status[1:]
    return SessionFailed(
        no_reply(
            f"answered {reply.code} {reply.status} {reply.detail} (in reply to {reply.command})", peer, status
        )
    )


async def _ehlo(client: aiosmtplib.SMTP, peer: str) -> None:
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError as exc:
        if not client.is_connected:
            raise
        try:  # an old relay without ESMTP
            await client.helo()
        except aiosmtplib.SMTPHeloError as helo_exc:
            raise _refused(Reply(helo_exc.code, helo_exc.message, "HELO"), peer) from helo_exc
        del exc


async def _authenticate(
    client: aiosmtplib.SMTP, settings: SmtpSettings, credentials: Credentials, peer: str
) -> None:
    username = credentials.username
    assert username is not None
    offered = [m.lower() for m in client.server_auth_methods]
    method = settings.auth
    if method is AuthMethod.AUTO:
        method = next(
            (m for m in (AuthMethod.PLAIN, AuthMethod.LOGIN) if m.value in offered), AuthMethod.PLAIN
        )
    if method.value not in offered:
        shown = ", ".join(m.upper() for m in offered) or "none"
        raise SessionFailed(
            no_reply(
                f"the relay does not offer AUTH {method.value.upper()} (it offers: {shown})", peer, "4.7.0"
            )
        )
    try:
        if method is AuthMethod.XOAUTH2:
            try:
                await client.auth_xoauth2(username, await credentials.token())
            except aiosmtplib.SMTPAuthenticationError:
                credentials.forget_token()  # refused: the next connection asks for a new one
                if settings.token_command is None or not client.is_connected:
                    raise
                # it may have expired since it was cached: one more try with a fresh one
                await client.auth_xoauth2(username, await credentials.token(renew=True))
        elif method is AuthMethod.PLAIN:
            await client.auth_plain(username, credentials.password())
        else:
            await client.auth_login(username, credentials.password())
    except aiosmtplib.SMTPAuthenticationError as exc:
        refusal = Reply(exc.code, exc.message, f"AUTH {method.value.upper()}")
        raise _refused(refusal, peer, "4.7.8") from exc  # 4.7.8: the log and status say "login refused"

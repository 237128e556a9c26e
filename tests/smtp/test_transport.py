"""The SMTP transport against aiosmtpd (a real ESMTP server) and a scripted server for broken peers:
every outcome path, TLS, AUTH and connection reuse."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from spoolerd.transport import OutcomeKind
from transports.smtp import SmtpTransport, pool

from .conftest import (
    CONTENT,
    PASSWORD,
    TOKEN,
    USER,
    Certs,
    Handler,
    Scripted,
    ServerFactory,
    message,
    sockets_to,
    transport,
)

Start = Callable[[SmtpTransport], Awaitable[SmtpTransport]]
DELIVERED, DEFERRED, FAILED = OutcomeKind.DELIVERED, OutcomeKind.DEFERRED, OutcomeKind.FAILED


async def test_delivers_with_envelope_and_without_bcc(smtp_server: ServerFactory, started: Start) -> None:
    server = smtp_server()
    t = await started(transport(server.port))
    msg, rcpts = message("you@example.net", "hidden@example.net")
    outcomes = await t.send(msg, rcpts)
    assert [(o.kind, o.code, o.status) for o in outcomes] == [(DELIVERED, 250, "2.0.0")] * 2
    assert "250 2.0.0 queued (in reply to end of DATA)" in outcomes[0].diagnostic
    (got,) = server.handler.received
    assert got.sender == "me@example.org"
    assert got.recipients == ["you@example.net", "hidden@example.net"]
    assert got.content == CONTENT.replace(b"Bcc: hidden@example.net\r\n", b"")  # byte-exact otherwise
    assert f"SIZE={len(got.content)}" in got.mail_options


async def test_null_sender_and_bare_lf_content(smtp_server: ServerFactory, started: Start) -> None:
    server = smtp_server()
    t = await started(transport(server.port))
    msg, rcpts = message("you@example.net", sender="", content=b"Subject: x\n\nbody\nmore")
    assert (await t.send(msg, rcpts))[0].kind is DELIVERED
    (got,) = server.handler.received
    assert got.sender == "<>"  # the null reverse-path, as aiosmtpd reports it
    assert got.content == b"Subject: x\r\n\r\nbody\r\nmore\r\n"


async def test_rcpt_replies_decide_each_recipient(smtp_server: ServerFactory, started: Start) -> None:
    server = smtp_server()
    t = await started(transport(server.port))
    msg, rcpts = message("ok@example.net", "r550-gone@example.net", "r450-busy@example.net")
    ok, gone, busy = await t.send(msg, rcpts)
    assert (ok.kind, ok.code) == (DELIVERED, 250)
    assert (gone.kind, gone.code, gone.status) == (FAILED, 550, "5.1.1")
    assert "in reply to RCPT TO" in gone.diagnostic and "r550-gone@example.net" in gone.diagnostic
    assert (busy.kind, busy.code, busy.status) == (DEFERRED, 450, "4.1.1")
    assert server.handler.received[0].recipients == ["ok@example.net"]


async def test_all_refused_sends_no_data_and_keeps_the_connection(
    smtp_server: ServerFactory, started: Start
) -> None:
    server = smtp_server()
    t = await started(transport(server.port))
    msg, rcpts = message("r550-a@example.net", "r551-b@example.net")
    assert [o.kind for o in await t.send(msg, rcpts)] == [FAILED, FAILED]
    assert server.handler.received == []
    msg, rcpts = message("fine@example.net")
    assert (await t.send(msg, rcpts))[0].kind is DELIVERED
    assert t.pool.opened == 1 and server.handler.sessions == 1  # RSET, then the same connection


async def test_mail_from_refusal_applies_to_everyone(smtp_server: ServerFactory, started: Start) -> None:
    server = smtp_server()
    t = await started(transport(server.port))
    msg, rcpts = message("a@example.net", "b@example.net", sender="s553-bad@example.org")
    outcomes = await t.send(msg, rcpts)
    assert [(o.kind, o.code, o.status) for o in outcomes] == [(FAILED, 553, "5.1.8")] * 2
    assert "in reply to MAIL FROM" in outcomes[0].diagnostic
    msg, rcpts = message("a@example.net", sender="s451-later@example.org")
    assert (await t.send(msg, rcpts))[0].kind is DEFERRED


async def test_data_reply_applies_to_accepted_recipients_only(
    smtp_server: ServerFactory, started: Start
) -> None:
    server = smtp_server()
    t = await started(transport(server.port))
    msg, rcpts = message("d554-x@example.net", "r550-y@example.net", "z@example.net")
    x, y, z = await t.send(msg, rcpts)
    assert (x.kind, x.code, x.status) == (FAILED, 554, "5.6.0")
    assert (y.kind, y.code) == (FAILED, 550)  # refused at RCPT: its own reply
    assert (z.kind, z.code) == (FAILED, 554)
    msg, rcpts = message("d451-x@example.net")
    (x,) = await t.send(msg, rcpts)
    assert (x.kind, x.code, x.status) == (DEFERRED, 451, "4.6.0")


async def test_size_limit_fails_without_transfer(smtp_server: ServerFactory, started: Start) -> None:
    server = smtp_server(data_size_limit=100)
    t = await started(transport(server.port))
    msg, rcpts = message("a@example.net", content=b"Subject: big\r\n\r\n" + b"x" * 200 + b"\r\n")
    (o,) = await t.send(msg, rcpts)
    assert (o.kind, o.status) == (FAILED, "5.3.4") and "exceeds the size limit 100" in o.diagnostic
    assert server.handler.received == []
    msg, rcpts = message("a@example.net", content=b"Subject: small\r\n\r\nx\r\n")
    assert (await t.send(msg, rcpts))[0].kind is DELIVERED  # the connection is still good


EIGHT_BIT = "Subject: caf\u00e9\r\n\r\nna\u00efve body\r\n".encode()
BODY_8BIT = "Subject: plain\r\n\r\nna\u00efve body\r\n".encode()


async def test_8bit_body_uses_8bitmime_when_offered(smtp_server: ServerFactory, started: Start) -> None:
    """(Without 8BITMIME it is converted: tests/smtp/test_wire_validity.py.)"""
    msg, rcpts = message("a@example.net", content=BODY_8BIT)
    server = smtp_server()
    t = await started(transport(server.port))
    assert (await t.send(msg, rcpts))[0].kind is DELIVERED
    (got,) = server.handler.received
    assert "BODY=8BITMIME" in got.mail_options and got.content == BODY_8BIT


async def test_utf8_headers_and_addresses_need_smtputf8(smtp_server: ServerFactory, started: Start) -> None:
    plain = smtp_server()
    t = await started(transport(plain.port))
    for content, rcpt in ((EIGHT_BIT, "a@example.net"), (CONTENT, "j\u00f6rg@example.net")):
        msg, rcpts = message(rcpt, content=content)
        (o,) = await t.send(msg, rcpts)
        assert (o.kind, o.status) == (FAILED, "5.6.7"), o
    assert plain.handler.received == []
    utf8 = smtp_server(enable_SMTPUTF8=True)
    t = await started(transport(utf8.port))
    msg, rcpts = message("j\u00f6rg@example.net", content=EIGHT_BIT)
    assert (await t.send(msg, rcpts))[0].kind is DELIVERED
    (got,) = utf8.handler.received
    assert "SMTPUTF8" in got.mail_options and got.recipients == ["j\u00f6rg@example.net"]
    assert got.content == EIGHT_BIT


async def test_control_characters_never_reach_the_wire(smtp_server: ServerFactory, started: Start) -> None:
    server = smtp_server()
    t = await started(transport(server.port))
    msg, rcpts = message("a@example.net\r\nRCPT TO:<evil@example.net>", "ok@example.net")
    bad, ok = await t.send(msg, rcpts)
    assert (bad.kind, bad.status) == (FAILED, "5.1.3") and ok.kind is DELIVERED
    assert server.handler.received[0].recipients == ["ok@example.net"]
    msg, rcpts = message("ok@example.net", sender="me@example.org>\r\nRSET")
    assert (await t.send(msg, rcpts))[0].status == "5.1.7"


async def test_connection_refused_defers_without_code(started: Start) -> None:
    from tests.peers.ports import free_port

    t = await started(transport(free_port()))
    msg, rcpts = message("a@example.net", "b@example.net")
    outcomes = await t.send(msg, rcpts)
    assert [(o.kind, o.code, o.status) for o in outcomes] == [(DEFERRED, None, "4.4.1")] * 2
    assert "cannot connect" in outcomes[0].diagnostic


def until_data(
    in_content: Callable[[], Awaitable[bool]],
) -> Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]:
    """A scripted relay that accepts everything up to DATA's 354, then leaves the message's first line
    to ``in_content`` (False: hang up)."""
    in_data = False

    async def on_line(line: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal in_data
        if in_data:
            return await in_content()
        verb = line[:4].upper()
        if verb == b"EHLO":
            writer.write(b"250-scripted\r\n250 8BITMIME\r\n")
        elif verb == b"DATA":
            writer.write(b"354 go ahead\r\n")
            in_data = True
        else:
            writer.write(b"250 ok\r\n")
        return True

    return on_line


async def test_connection_dropped_mid_data(
    scripted_server: Callable[..., Awaitable[Scripted]], started: Start
) -> None:
    async def hang_up() -> bool:
        return False  # the first line of content: hang up

    server = await scripted_server(until_data(hang_up))
    t = await started(transport(server.port))
    msg, rcpts = message("a@example.net", "b@example.net")
    outcomes = await t.send(msg, rcpts)
    assert [(o.kind, o.code) for o in outcomes] == [(DEFERRED, None)] * 2
    assert "connection lost while waiting for the reply to end of DATA" in outcomes[0].diagnostic
    assert t.pool.idle == 0  # a broken connection is not kept


async def test_a_relay_that_stops_reading_the_message_times_out(
    scripted_server: Callable[..., Awaitable[Scripted]], started: Start
) -> None:
    """A relay that answers 354 and then reads no more: the message backs up in the socket buffers and
    writing it must end at data_timeout (RFC 5321's data block timeout), not wait for ever."""
    stuck = asyncio.Event()

    async def read_no_more() -> bool:
        await stuck.wait()  # reads nothing more, answers nothing
        return False

    server = await scripted_server(until_data(read_no_more))
    t = await started(transport(server.port, data_timeout=1))
    body = (b"x" * 998 + b"\r\n") * 40_000  # 40 MB: more than every socket buffer on the way holds
    msg, rcpts = message("a@example.net", content=b"Subject: big\r\n\r\n" + body)
    try:
        with anyio.fail_after(30):
            (outcome,) = await t.send(msg, rcpts)
    finally:
        stuck.set()
    assert (outcome.kind, outcome.code, outcome.status) == (DEFERRED, None, "4.4.2"), outcome
    assert "timed out" in outcome.diagnostic
    assert t.pool.idle == 0


async def test_stalled_server_times_out(smtp_server: ServerFactory, started: Start) -> None:
    release = threading.Event()
    server = smtp_server(Handler(stall_rcpt=release))
    t = await started(transport(server.port, command_timeout=2))  # only the stalled RCPT gets near it
    msg, rcpts = message("first@example.net", "stall@example.net")
    try:
        first, stalled = await t.send(msg, rcpts)
    finally:
        release.set()
    assert (stalled.kind, stalled.code, stalled.status) == (DEFERRED, None, "4.4.2")
    assert first.kind is DEFERRED  # accepted, but the transaction never completed
    assert "timed out while waiting for the reply to RCPT TO" in stalled.diagnostic
    assert t.pool.idle == 0
    msg, rcpts = message("next@example.net")
    assert (await t.send(msg, rcpts))[0].kind is DELIVERED  # a fresh connection
    assert t.pool.opened == 2


async def test_unexpected_replies_are_not_success_and_end_the_connection(
    scripted_server: Callable[..., Awaitable[Scripted]], started: Start
) -> None:
    async def on_line(line: bytes, writer: asyncio.StreamWriter) -> bool:
        verb = line[:4].upper()
        if verb == b"EHLO":
            writer.write(b"250-scripted\r\n250 8BITMIME\r\n")
        elif verb == b"RCPT" and b"odd@" in line:
            writer.write(b"252 2.1.5 cannot verify, will try\r\n")
        else:
            writer.write(b"250 ok\r\n")
        return True

    server = await scripted_server(on_line)
    t = await started(transport(server.port))
    msg, rcpts = message("odd@example.net")
    (o,) = await t.send(msg, rcpts)
    assert (o.kind, o.code, o.status) == (DEFERRED, 252, "4.5.0") and "unexpected reply" in o.diagnostic
    assert not any(line.upper().startswith(b"DATA") for line in server.lines)  # nothing was sent
    assert t.pool.idle == 0  # a relay that breaks the protocol is not trusted with the next message


def pipelining_relay(refuse_mail: bool = False) -> Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]:
    """A relay that offers PIPELINING and answers line by line, as a real one does."""
    state = {"mail": False, "rcpts": 0, "data": False}

    async def on_line(line: bytes, writer: asyncio.StreamWriter) -> bool:
        if state["data"]:
            if line == b".\r\n":
                state.update(data=False, mail=False, rcpts=0)
                writer.write(b"250 2.0.0 queued\r\n")
            return True
        verb = line[:4].upper()
        if verb == b"EHLO":
            writer.write(b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        elif verb == b"MAIL":
            state["mail"] = not refuse_mail
            writer.write(b"250 2.1.0 ok\r\n" if state["mail"] else b"550 5.7.1 sender refused\r\n")
        elif verb == b"RCPT" and not state["mail"]:
            writer.write(b"503 5.5.1 need MAIL first\r\n")
        elif verb == b"RCPT":
            refused = b"gone@" in line
            state["rcpts"] += 0 if refused else 1
            writer.write(b"550 5.1.1 no such user\r\n" if refused else b"250 2.1.5 ok\r\n")
        elif verb == b"DATA" and state["rcpts"]:
            state["data"] = True
            writer.write(b"354 go ahead\r\n")
        elif verb == b"DATA":
            writer.write(b"554 5.5.1 no valid recipients\r\n")
        elif verb == b"RSET":
            state.update(mail=False, rcpts=0)
            writer.write(b"250 ok\r\n")
        else:
            writer.write(b"250 ok\r\n")
        return True

    return on_line


async def test_pipelined_transaction_keeps_each_reply_with_its_command(
    scripted_server: Callable[..., Awaitable[Scripted]], started: Start
) -> None:
    server = await scripted_server(pipelining_relay())
    t = await started(transport(server.port))
    msg, rcpts = message("a@example.net", "gone@example.net", "b@example.net")
    a, gone, b = await t.send(msg, rcpts)
    assert (a.kind, b.kind, gone.kind, gone.code, gone.status) == (DELIVERED, DELIVERED, FAILED, 550, "5.1.1")
    msg, rcpts = message("gone@example.net")  # all refused: the pipelined DATA gets 554, nothing is sent
    (only,) = await t.send(msg, rcpts)
    assert (only.kind, only.code) == (FAILED, 550)
    msg, rcpts = message("c@example.net")
    assert (await t.send(msg, rcpts))[0].kind is DELIVERED
    assert server.connections == 1  # every reply was read in step, so the connection stayed usable
    assert sum(1 for line in server.lines if line == b".\r\n") == 2


async def test_pipelined_refused_sender_reads_the_rest_and_resets(
    scripted_server: Callable[..., Awaitable[Scripted]], started: Start
) -> None:
    server = await scripted_server(pipelining_relay(refuse_mail=True))
    t = await started(transport(server.port))
    msg, rcpts = message("a@example.net", "b@example.net")
    outcomes = await t.send(msg, rcpts)
    assert [(o.kind, o.code, o.status) for o in outcomes] == [(FAILED, 550, "5.7.1")] * 2
    assert (await t.send(msg, rcpts))[0].code == 550  # same connection, still in step
    assert server.connections == 1 and b"RSET\r\n" in server.lines


async def test_stale_pooled_connection_is_replaced(
    scripted_server: Callable[..., Awaitable[Scripted]], started: Start
) -> None:
    """The relay closed an idle connection: the next message goes out on a new one, not deferred."""
    transactions = 0
    servers: list[Scripted] = []

    async def on_line(line: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal transactions
        verb = line[:4].upper()
        if verb == b"MAIL" and transactions == 1 and servers[0].connections == 1:
            return False  # this connection has served its message; drop it when it comes back
        if verb == b"EHLO":
            writer.write(b"250-scripted\r\n250 8BITMIME\r\n")
        elif verb == b"DATA":
            writer.write(b"354 go ahead\r\n")
        elif line == b".\r\n":
            transactions += 1
            writer.write(b"250 2.0.0 queued\r\n")
        elif verb in (b"MAIL", b"RCPT", b"RSET", b"QUIT"):
            writer.write(b"250 ok\r\n")
        return True

    server = await scripted_server(on_line)
    servers.append(server)
    t = await started(transport(server.port))
    msg, rcpts = message("a@example.net")
    assert (await t.send(msg, rcpts))[0].kind is DELIVERED
    outcome = (await t.send(msg, rcpts))[0]
    assert outcome.kind is DELIVERED, outcome
    assert server.connections == 2


async def test_connections_are_pooled_and_bounded(smtp_server: ServerFactory, started: Start) -> None:
    server = smtp_server()
    t = await started(transport(server.port, pool_size=2, messages_per_connection=3))
    msg, rcpts = message("a@example.net")
    results = []

    async def one() -> None:
        results.extend(await t.send(msg, rcpts))

    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(one)
    assert [o.kind for o in results] == [DELIVERED] * 12
    assert len(server.handler.received) == 12
    assert t.pool.opened == 4  # two at a time, three messages each: 12 / 3


async def test_idle_connection_is_closed_with_quit(smtp_server: ServerFactory, started: Start) -> None:
    quit_seen = threading.Event()

    class QuitHandler(Handler):
        async def handle_QUIT(self, server: object, session: object, envelope: object) -> str:
            quit_seen.set()
            return "221 bye"

    server = smtp_server(QuitHandler())
    t = await started(transport(server.port, idle_timeout=0.2))
    msg, rcpts = message("a@example.net")
    assert (await t.send(msg, rcpts))[0].kind is DELIVERED
    assert await anyio.to_thread.run_sync(quit_seen.wait, 10)
    assert t.pool.idle == 0


@pytest.mark.parametrize("tls", ["none", "starttls"])
@pytest.mark.parametrize("per_connection", [1, 100])
async def test_stop_returns_once_the_connections_are_closed(
    smtp_server: ServerFactory, certs: Certs, tls: str, per_connection: int
) -> None:
    """Closing a connection only starts it (TLS ends with a close_notify round trip): stop waits until
    it is closed, whether stop closed it (idle) or it was closed after its last transaction (used up)."""
    server = smtp_server(tls_context=certs.server)
    options = {"tls": tls, "ca_file": str(certs.ca_file), "messages_per_connection": per_connection}
    t = transport(server.port, **options)
    await t.start()
    try:
        assert (await t.send(*message("a@example.net")))[0].kind is DELIVERED
        if per_connection > 1:
            assert sockets_to(server.port) == 1  # kept for the next message
    finally:
        await t.stop()
    assert sockets_to(server.port) == 0


async def test_stop_aborts_a_connection_not_closed_in_time(
    smtp_server: ServerFactory, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "CLOSE_TIMEOUT", 0.0)  # no time for the close_notify round trip
    server = smtp_server(tls_context=certs.server)
    t = transport(server.port, tls="starttls", ca_file=str(certs.ca_file))
    await t.start()
    try:
        assert (await t.send(*message("a@example.net")))[0].kind is DELIVERED
    finally:
        with capture_logs() as lines:
            await t.stop()
    assert sockets_to(server.port) == 0
    assert [x["count"] for x in lines if x["event"] == "connections aborted"] == [1]


# ---------------------------------------------------------------------------------------------- TLS


# A refused TLS handshake leaves asyncio's raw socket transport to the garbage collector (CPython 3.11's
# sslproto does not close it when the handshake fails); it is closed there, so only the warning is muted.
_TLS_HANDSHAKE_LEAK = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)


@_TLS_HANDSHAKE_LEAK
async def test_starttls_self_signed_refused_by_default(
    smtp_server: ServerFactory, started: Start, certs: Certs
) -> None:
    server = smtp_server(tls_context=certs.server)
    t = await started(transport(server.port, tls="starttls"))
    msg, rcpts = message("a@example.net")
    (o,) = await t.send(msg, rcpts)
    assert (o.kind, o.code, o.status) == (DEFERRED, None, "4.7.5")
    assert "certificate not verified" in o.diagnostic
    assert server.handler.received == []
    trusting = await started(transport(server.port, tls="starttls", ca_file=str(certs.ca_file)))
    assert (await trusting.send(msg, rcpts))[0].kind is DELIVERED
    assert len(server.handler.received) == 1


async def test_starttls_required_but_not_offered(smtp_server: ServerFactory, started: Start) -> None:
    server = smtp_server()
    t = await started(transport(server.port, tls="starttls"))
    msg, rcpts = message("a@example.net")
    (o,) = await t.send(msg, rcpts)
    assert (o.kind, o.status) == (DEFERRED, "4.7.4") and server.handler.received == []
    opportunistic = await started(transport(server.port, tls="opportunistic"))
    assert (await opportunistic.send(msg, rcpts))[0].kind is DELIVERED


@_TLS_HANDSHAKE_LEAK
async def test_implicit_tls(smtp_server: ServerFactory, started: Start, certs: Certs) -> None:
    server = smtp_server(ssl_context=certs.server)
    msg, rcpts = message("a@example.net")
    refused = await started(transport(server.port, tls="implicit"))
    (o,) = await refused.send(msg, rcpts)
    assert (o.kind, o.status) == (DEFERRED, "4.7.5"), o
    t = await started(transport(server.port, tls="implicit", ca_file=str(certs.ca_file)))
    assert (await t.send(msg, rcpts))[0].kind is DELIVERED


# --------------------------------------------------------------------------------------------- AUTH


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    path.chmod(stat.S_IRUSR)
    return path


@pytest.mark.parametrize("method", ["plain", "login", "auto"])
async def test_auth_with_password_file(
    smtp_server: ServerFactory, started: Start, password_file: Path, method: str
) -> None:
    server = smtp_server()
    t = await started(transport(server.port, username=USER, password_file=str(password_file), auth=method))
    msg, rcpts = message("a@example.net")
    assert (await t.send(msg, rcpts))[0].kind is DELIVERED


async def test_auth_failure_is_deferred_and_names_no_secret(
    smtp_server: ServerFactory, started: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_server()
    monkeypatch.setenv("SPOOLERD_TEST_PW", "wrong-password-xyz")
    t = await started(transport(server.port, username=USER, password_env="SPOOLERD_TEST_PW"))
    msg, rcpts = message("a@example.net")
    (o,) = await t.send(msg, rcpts)
    assert (o.kind, o.code) == (DEFERRED, None) and o.status.startswith("4.7.")
    assert "535" in o.diagnostic and "AUTH PLAIN" in o.diagnostic
    assert "wrong-password-xyz" not in o.diagnostic
    assert server.handler.received == []


async def test_no_credentials_without_tls(
    smtp_server: ServerFactory, started: Start, password_file: Path
) -> None:
    server = smtp_server()
    t = await started(
        transport(server.port, tls="opportunistic", username=USER, password_file=str(password_file))
    )
    msg, rcpts = message("a@example.net")
    (o,) = await t.send(msg, rcpts)
    assert (o.kind, o.status) == (DEFERRED, "4.7.0") and "without TLS" in o.diagnostic


async def test_xoauth2_token_file(smtp_server: ServerFactory, started: Start, tmp_path: Path) -> None:
    server = smtp_server()
    token = tmp_path / "token"
    token.write_text("stale-token\n")
    t = await started(transport(server.port, username=USER, auth="xoauth2", token_file=str(token)))
    msg, rcpts = message("a@example.net")
    assert (await t.send(msg, rcpts))[0].kind is DEFERRED
    token.write_text(TOKEN + "\n")  # renewed by someone else: read again for the next connection
    assert (await t.send(msg, rcpts))[0].kind is DELIVERED


async def test_xoauth2_token_command_refreshed_when_refused(
    smtp_server: ServerFactory, started: Start, tmp_path: Path
) -> None:
    """The command's first token is refused (expired); the transport asks again and succeeds."""
    calls = tmp_path / "calls"
    script = tmp_path / "token.py"
    script.write_text(
        "import json, pathlib, sys\n"
        f"p = pathlib.Path({str(calls)!r})\n"
        "n = int(p.read_text()) if p.exists() else 0\n"
        "p.write_text(str(n + 1))\n"
        f"print(json.dumps({{'access_token': 'expired' if n == 0 else {TOKEN!r}, 'expires_in': 3600}}))\n"
    )
    server = smtp_server()
    t = await started(
        transport(server.port, username=USER, auth="xoauth2", token_command=[sys.executable, str(script)])
    )
    msg, rcpts = message("a@example.net")
    assert (await t.send(msg, rcpts))[0].kind is DELIVERED
    assert calls.read_text() == "2"
    await t.stop()  # a new connection reuses the cached token: the command does not run again
    assert (await t.send(msg, rcpts))[0].kind is DELIVERED
    assert calls.read_text() == "2"


async def test_xoauth2_refused_token_is_not_reused(
    scripted_server: Callable[..., Awaitable[Scripted]], started: Start, tmp_path: Path
) -> None:
    """A relay that refuses the token and hangs up: the next connection asks the command again."""
    calls = tmp_path / "calls"
    script = tmp_path / "token.py"
    script.write_text(
        "import pathlib\n"
        f"p = pathlib.Path({str(calls)!r})\n"
        "p.write_text(str(int(p.read_text()) + 1 if p.exists() else 1))\n"
        "print('some-token')\n"
    )

    async def on_line(line: bytes, writer: asyncio.StreamWriter) -> bool:
        verb = line[:4].upper()
        if verb == b"EHLO":
            writer.write(b"250-scripted\r\n250 AUTH XOAUTH2\r\n")
        elif verb == b"AUTH":
            writer.write(b"535 5.7.8 token expired\r\n")
            return False
        return True

    server = await scripted_server(on_line)
    t = await started(
        transport(server.port, username=USER, auth="xoauth2", token_command=[sys.executable, str(script)])
    )
    msg, rcpts = message("a@example.net")
    for expected_calls in ("1", "2"):
        (o,) = await t.send(msg, rcpts)
        assert o.kind is DEFERRED and "535" in o.diagnostic
        assert calls.read_text() == expected_calls


async def test_missing_secret_is_a_start_error(tmp_path: Path) -> None:
    from spoolerd.errors import ConfigError

    t = transport(1, username=USER, password_file=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="cannot read"):
        await t.start()
    os.environ.pop("SPOOLERD_UNSET_PW", None)
    t = transport(1, username=USER, password_env="SPOOLERD_UNSET_PW")
    with pytest.raises(ConfigError, match="SPOOLERD_UNSET_PW"):
        await t.start()

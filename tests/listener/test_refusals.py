"""Bad input and hostile clients against a real daemon's listener: each gets its RFC 3463 code, and
nothing half-received is ever stored."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.listener.conftest import ListenerDaemon, Raw, in_thread, message, sendmail


async def test_a_client_outside_allowed_networks_cannot_relay(make_daemon: Callable[..., Any]) -> None:
    d: ListenerDaemon = await make_daemon('allowed_networks = ["127.0.0.1/32"]')

    def run() -> list[str]:
        with Raw(d.port, source="127.0.0.2") as c:
            out = [c.cmd("EHLO outsider"), c.cmd("MAIL FROM:<x@example.com>")]
            out += [c.cmd("RCPT TO:<bob@localhost>"), c.cmd("RCPT TO:<someone@remote.test>"), c.cmd("DATA")]
            return out

    ehlo, mail, local, remote, data = await in_thread(run)
    assert "AUTH" not in ehlo
    assert mail.startswith("250 ")
    assert local.startswith("554 5.7.1 ") and remote.startswith("554 5.7.1 "), (local, remote)
    assert data.startswith("503 5.5.1 ")
    with Raw(d.port, source="127.0.0.1") as c:  # the allowed address may
        c.cmd("EHLO insider")
        c.cmd("MAIL FROM:<x@example.com>")
        assert c.cmd("RCPT TO:<someone@remote.test>").startswith("250 ")
    assert (await d.status_row())["counters"]["refused"] == 2


async def test_bare_lf_and_nul_are_handled_as_postfix_does(daemon: ListenerDaemon) -> None:
    def run() -> str:
        with Raw(daemon.port) as c:
            c.cmd("EHLO x")
            c.cmd("MAIL FROM:<a@example.com>")
            c.cmd("RCPT TO:<bob@localhost>")
            assert c.cmd("DATA").startswith("354")
            # a bare <LF>.<LF> does not end DATA (no smuggling); a bare LF ends a line; NUL is dropped
            c.send(b"Subject: bare\nFrom: a@example.com\n\nline one\nline\0two\n.\nMAIL FROM:<evil@x>\r\n")
            c.send(b"..dotted\r\n.\r\n")
            return c.reply()

    assert (await in_thread(run)).startswith("250 2.0.0 ")
    [row] = await daemon.inbox(1)
    content = await daemon.fetch(row["id"])
    body = content.split(b"\r\n\r\n", 1)[1]
    assert body == b"line one\r\nlinetwo\r\n.\r\nMAIL FROM:<evil@x>\r\n.dotted\r\n"
    assert b"\0" not in content and b"\n" not in content.replace(b"\r\n", b"")
    assert row["subject"] == "bare"


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"EHLO evil\rX-Injected: yes", "501 5.5.4"),
        (b"MAIL FROM:<a@example.com\r\nX-Injected: yes>", "501 5.5.4"),
        (b"MAIL FROM:<a@example.com> ENVID=a+0D+0AX-Injected:+20yes", "501 5.5.4"),
        (b"MAIL FROM:<a\x01b@example.com>", "501 5.5.4"),
        (b"MAIL FROM:<not an address>", "553 5.1.3"),
        (b"MAIL FROM:<a@example.com> FOO=bar", "555 5.5.4"),
    ],
)
async def test_injection_attempts_are_refused(daemon: ListenerDaemon, line: bytes, code: str) -> None:
    def run() -> str:
        with Raw(daemon.port) as c:
            if not line.startswith(b"EHLO"):
                c.cmd("EHLO ok")
            return c.cmd(line)

    assert (await in_thread(run)).startswith(code)


async def test_injection_at_rcpt_and_the_received_field_stays_clean(daemon: ListenerDaemon) -> None:
    def run() -> list[str]:
        with Raw(daemon.port) as c:
            c.cmd("EHLO ok")
            c.cmd("MAIL FROM:<a@example.com>")
            out = [
                c.cmd(b"RCPT TO:<bob@localhost\rX-Injected: yes>"),
                c.cmd("RCPT TO:<bob@localhost> NOTIFY=BOGUS"),
            ]
            out.append(c.cmd("RCPT TO:<bob@localhost>"))
            c.cmd("DATA")
            c.send(message("clean") + b".\r\n")
            out.append(c.reply())
            return out

    bad, notify, ok, done = await in_thread(run)
    assert bad.startswith("501 5.5.4") and notify.startswith("501 5.5.4")
    assert ok.startswith("250 ") and done.startswith("250 ")
    [row] = await daemon.inbox(1)
    assert b"X-Injected" not in await daemon.fetch(row["id"])


async def test_a_thousand_recipients_and_one_more(daemon: ListenerDaemon) -> None:
    def run() -> tuple[list[str], str, str]:
        with Raw(daemon.port) as c:
            c.cmd("EHLO many")
            c.cmd("MAIL FROM:<a@example.com>")
            # pipelined, as a real client sends them
            c.send(b"".join(f"RCPT TO:<r{i}@remote.test>\r\n".encode() for i in range(1001)))
            replies = [c.reply() for _ in range(1001)]
            c.cmd("DATA")
            c.send(message("many", to="undisclosed-recipients:;") + b".\r\n")
            return replies[:1000], replies[1000], c.reply()

    ok, extra, done = await in_thread(run)
    assert all(r.startswith("250 2.1.5") for r in ok)
    assert extra.startswith("452 4.5.3 "), extra
    assert done.startswith("250 2.0.0 ")
    accepted = await daemon.wait_log(lambda e: e.get("event") == "accepted")
    assert accepted["nrcpt"] == 1000


async def test_size_announced_too_large_is_refused_at_mail(daemon: ListenerDaemon) -> None:
    def run() -> list[str]:
        with Raw(daemon.port) as c:
            ehlo = c.cmd("EHLO big")
            limit = int(next(line for line in ehlo.splitlines() if "SIZE" in line).split()[-1])
            return [
                c.cmd(f"MAIL FROM:<a@example.com> SIZE={limit + 1}"),
                c.cmd(f"MAIL FROM:<a@example.com> SIZE={limit}"),
            ]

    over, at = await in_thread(run)
    assert over.startswith("552 5.3.4 ") and at.startswith("250 ")


async def test_a_body_over_the_limit_is_refused_at_the_end_of_data(make_daemon: Callable[..., Any]) -> None:
    limit = 100_000
    daemon: ListenerDaemon = await make_daemon(spooler=f"message_size_limit = {limit}")

    def run() -> str:
        with Raw(daemon.port) as c:
            c.cmd("EHLO big")
            c.cmd("MAIL FROM:<a@example.com>")
            c.cmd("RCPT TO:<bob@localhost>")
            c.cmd("DATA")
            line = b"x" * 998 + b"\r\n"
            c.send(message("big") + line * (limit // len(line) + 2) + b".\r\n")
            return c.reply()

    assert (await in_thread(run)).startswith("552 5.3.4 ")
    with Raw(daemon.port) as c:  # the session and the daemon carry on; nothing was stored
        assert c.cmd("EHLO again").startswith("250")
    ctl = await daemon.client()
    assert await ctl.ok("list", folder="outbox") == [] and await ctl.ok("queue") == []


async def test_a_connection_dropped_mid_data_stores_nothing(daemon: ListenerDaemon) -> None:
    def run() -> None:
        c = Raw(daemon.port)
        c.cmd("EHLO dropper")
        c.cmd("MAIL FROM:<a@example.com>")
        c.cmd("RCPT TO:<bob@localhost>")
        c.cmd("DATA")
        c.send(message("half")[:40])
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST
        c.close()

    await in_thread(run)
    await daemon.wait_log(lambda e: e.get("event") == "smtp session ended" and e["client"] == "127.0.0.1")
    assert await in_thread(sendmail, daemon, "a@example.com", ["bob@localhost"], message("whole")) == {}
    rows = await daemon.inbox(1)
    assert [r["subject"] for r in rows] == ["whole"]
    assert len(daemon.logged("accepted")) == 1
    await daemon.drained()
    ctl = await daemon.client()
    assert await ctl.ok("list", folder="outbox") == []  # no half-made draft either


async def test_silent_and_slow_clients_time_out(make_daemon: Callable[..., Any]) -> None:
    d: ListenerDaemon = await make_daemon("command_timeout = 1\ndata_timeout = 2")

    def silent() -> str:
        with Raw(d.port) as c:
            c.cmd("EHLO quiet")
            return c.reply()  # nothing sent: the server speaks first, then hangs up

    assert (await in_thread(silent)).startswith("421 4.4.2 ")

    def slow() -> bytes:
        with Raw(d.port) as c:
            c.cmd("EHLO slow")
            c.cmd("MAIL FROM:<a@example.com>")
            c.cmd("RCPT TO:<bob@localhost>")
            c.cmd("DATA")
            for _ in range(10):  # a line every half second: alive, but DATA takes too long in all
                try:
                    c.send(b"trickle\r\n")
                except OSError:
                    break
                time.sleep(0.5)  # the client's own pace, not a wait for state
            return c.file.read()

    assert await in_thread(slow) == b""
    await d.wait_log(lambda e: e.get("event") == "smtp client timed out" and e["in_data"])
    ctl = await d.client()
    assert await ctl.ok("list", folder="outbox") == [] and not d.logged("accepted")


async def test_connections_over_max_connections_get_421(make_daemon: Callable[..., Any]) -> None:
    d: ListenerDaemon = await make_daemon("max_connections = 2")
    first, second = Raw(d.port), Raw(d.port)
    try:
        with Raw(d.port) as third:
            assert third.greeting.startswith("421 4.7.0 ")
        assert first.greeting.startswith("220 ") and second.greeting.startswith("220 ")
        assert (await d.status_row())["counters"]["connections"] == 2
    finally:
        first.close()
        second.close()


async def test_notify_never_means_no_ndr_and_success_a_dr(daemon: ListenerDaemon) -> None:
    def run() -> list[str]:
        with Raw(daemon.port) as c:
            c.cmd("EHLO dsn")
            out = [c.cmd("MAIL FROM:<me@localhost> RET=HDRS ENVID=QQ+2B1")]
            out.append(c.cmd("RCPT TO:<nobody@remote.test> NOTIFY=NEVER ORCPT=rfc822;nobody@remote.test"))
            c.cmd("DATA")
            c.send(message("never", to="nobody@remote.test") + b".\r\n")
            out.append(c.reply())
            c.cmd("MAIL FROM:<me@localhost>")
            out.append(c.cmd("RCPT TO:<bob@localhost> NOTIFY=SUCCESS,FAILURE"))
            c.cmd("DATA")
            c.send(message("success") + b".\r\n")
            out.append(c.reply())
            return out

    assert all(r.startswith("250 ") for r in await in_thread(run))
    rows = await daemon.inbox(2)  # the delivered message and its delivery report; no NDR for "never"
    classes = sorted(r["class"] for r in rows)
    assert classes == ["IPM.Note", "REPORT.IPM.Note.DR"], rows
    await daemon.drained()  # "never" was finished (failed) ...
    ctl = await daemon.client()
    assert len(await ctl.ok("list", folder="inbox")) == 2  # ... without a report

"""The listener against Python's smtplib and raw sockets, on a real daemon: what is accepted is
committed, queued and delivered; what is refused gets an enhanced status code and leaves nothing."""

from __future__ import annotations

import socket
from typing import Any

from tests.listener.conftest import ListenerDaemon, Raw, in_thread, message


def _send(d: ListenerDaemon, sender: str, rcpts: list[str], content: bytes) -> dict[str, Any]:
    with d.smtp() as s:
        code, features = s.ehlo("client.example")
        assert code == 250
        s.mail(sender)
        for r in rcpts:
            assert s.rcpt(r)[0] == 250
        code, reply = s.data(content)
        return {
            "features": features.decode(),
            "code": code,
            "reply": reply.decode(),
            "esmtp": s.esmtp_features,
        }


async def test_smtplib_message_is_queued_delivered_and_logged(daemon: ListenerDaemon) -> None:
    sent = await in_thread(_send, daemon, "app@example.com", ["bob@localhost"], message("first"))
    assert sent["code"] == 250 and sent["reply"].startswith("2.0.0 Ok: queued as ")
    queue_id = sent["reply"].rsplit(" ", 1)[1]
    features = sent["esmtp"]
    for ext in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes", "dsn"):
        assert ext in features, features
    assert features["size"] == str(25 * 1024 * 1024)
    assert "auth" not in features and "starttls" not in features  # no credentials, no TLS configured
    accepted = await daemon.wait_log(lambda e: e.get("event") == "accepted")
    assert accepted["queue_id"] == queue_id and accepted["client"] == "127.0.0.1"
    assert accepted["nrcpt"] == 1 and accepted["sender"] == "app@example.com"
    [row] = await daemon.inbox(1)
    content = await daemon.fetch(row["id"])
    received = content.split(b"\r\n\r\n")[0]
    assert b"Received: from client.example ([127.0.0.1])\r\n\tby " in received
    assert b"with ESMTP\r\n\tfor <bob@localhost>; " in received
    assert content.endswith(b"\r\n\r\na line\r\n")
    await daemon.wait_log(lambda e: e.get("event") == "smtp session ended" and e["accepted"] == 1)
    row = await daemon.status_row()
    assert row["counters"]["accepted"] == 1 and row["counters"]["connections"] == 0
    assert row["status"] == ["available"] and row["address"] == f"127.0.0.1:{daemon.port}"


async def test_pipelined_transaction_is_answered_in_order(daemon: ListenerDaemon) -> None:
    def run() -> list[bytes]:
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=30) as sock:
            f = sock.makefile("rb")
            f.readline()
            sock.sendall(b"EHLO x\r\n")
            while not f.readline().startswith(b"250 "):
                pass
            sock.sendall(
                b"MAIL FROM:<a@example.com>\r\nRCPT TO:<bob@localhost>\r\n"
                b"RCPT TO:<carol@localhost>\r\nDATA\r\n"
            )
            answers = [f.readline() for _ in range(4)]
            sock.sendall(message("piped") + b".\r\nQUIT\r\n")
            answers += [f.readline(), f.readline()]
            return answers

    answers = await in_thread(run)
    assert [a[:3] for a in answers] == [b"250", b"250", b"250", b"354", b"250", b"221"], answers
    assert (await daemon.inbox(1))[0]["subject"] == "piped"


async def test_the_replies_to_a_pipelined_group_go_out_together(daemon: ListenerDaemon) -> None:
    """RFC 2920 §3.1: the replies to MAIL and RCPT are held while the group's next command is already
    read, and go out with the 354 in one write, as one read on the client's side."""

    def run() -> bytes:
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=30) as sock:
            got = b""
            while not got.endswith(b"\r\n"):
                got += sock.recv(4096)  # the greeting
            sock.sendall(b"EHLO x\r\n")
            got = b""
            while b"\r\n250 " not in got or not got.endswith(b"\r\n"):
                got += sock.recv(4096)
            sock.sendall(
                b"MAIL FROM:<a@example.com>\r\nRCPT TO:<bob@localhost>\r\n"
                b"RCPT TO:<carol@localhost>\r\nDATA\r\n"
            )
            first = sock.recv(4096)
            sock.sendall(b".\r\nQUIT\r\n")
            return first

    first = await in_thread(run)
    assert first.split(b"\r\n")[:-1] == [
        b"250 2.1.0 Ok", b"250 2.1.5 Ok", b"250 2.1.5 Ok", b"354 End data with <CR><LF>.<CR><LF>"
    ], first  # fmt: skip


async def test_rcpt_gets_the_default_domain_and_the_alias_map(make_daemon: Any) -> None:
    d: ListenerDaemon = await make_daemon(extra='[aliases]\npostmaster = ["ops", "bob@localhost"]')

    def run() -> list[str]:
        with Raw(d.port) as c:
            c.cmd("EHLO x")
            c.cmd("MAIL FROM:<a@example.com>")
            out = [c.cmd("RCPT TO:<Postmaster>"), c.cmd('RCPT TO:<"a b"@@localhost>'), c.cmd("DATA")]
            c.send(message("aliased", to="postmaster") + b".\r\n")
            return [*out, c.reply()]

    postmaster, garbage, data, done = await in_thread(run)
    assert postmaster.startswith("250 2.1.5") and garbage.startswith("553 5.1.3"), (postmaster, garbage)
    assert data.startswith("354") and done.startswith("250 2.0.0")
    accepted = await d.wait_log(lambda e: e.get("event") == "accepted")
    assert accepted["nrcpt"] == 2  # ops@localhost and bob@localhost
    [row] = await d.inbox(1)  # one copy for the store's two recipients
    assert row["subject"] == "aliased"

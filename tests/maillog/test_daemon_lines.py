"""The mail log of a real daemon process relaying through the smtp transport to aiosmtpd: a line per
recipient outcome, per accepted message and per report, in JSON and in the console format; relay state
changes once per change; the failing relay in ``status``; debug lines without secrets."""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from tests.control.conftest import Client
from tests.control.test_tools import ctl, run
from tests.peers.ports import free_port
from tests.smtp.conftest import PASSWORD, USER, Certs, ServerFactory

from .conftest import RelayDaemon, records, wait_records

MESSAGE_ID = "<log-test-1@localhost>"
CONTENT = (
    f"From: me@localhost\r\nTo: ok@example.net\r\nSubject: logs\r\nMessage-ID: {MESSAGE_ID}\r\n\r\nbody\r\n"
).encode()
OK, LATER, GONE = "ok@example.net", "r451-later@example.net", "r550-gone@example.net"


async def submit(client: Client, *recipients: str, content: bytes = CONTENT) -> str:
    answer = await client.ok(
        "submit", message=base64.b64encode(content).decode(), recipients=list(recipients)
    )
    return str(answer["id"])


async def started(daemons: list[Any], daemon: RelayDaemon) -> RelayDaemon:
    daemons.append(daemon)
    await daemon.start()
    return daemon


async def test_json_lines_for_each_outcome_the_accepted_message_and_the_ndr(
    root: Path, daemons: list[Any], smtp_server: ServerFactory
) -> None:
    server = smtp_server()
    daemon = await started(daemons, RelayDaemon(root, server.port))
    client = await daemon.client()
    queue_id = await submit(client, OK, LATER, GONE)
    lines = await wait_records(daemon, "delivery", 3, lambda r: r["queue_id"] == queue_id)
    relay = f"127.0.0.1:{server.port}"
    by_rcpt = {r["recipient"]: r for r in lines}
    assert set(by_rcpt) == {OK, LATER, GONE}
    for r in lines:
        assert r["level"] == "info" and r["message_id"] == MESSAGE_ID
        assert r["transport"] == "relay" and r["relay"] == relay
        assert isinstance(r["delay"], float) and 0 <= r["delay"] < 30
    expected = {
        OK: ("sent", "2.0.0", "250 2.0.0 queued (in reply to end of DATA)"),
        LATER: ("deferred", "4.1.1", f"451 4.1.1 scripted reply for {LATER} (in reply to RCPT TO)"),
        GONE: ("bounced", "5.1.1", f"550 5.1.1 scripted reply for {GONE} (in reply to RCPT TO)"),
    }
    assert {a: (r["status"], r["dsn"], r["reply"]) for a, r in by_rcpt.items()} == expected

    (accepted,) = records(daemon, "accepted")
    assert {
        k: accepted[k] for k in ("queue_id", "message_id", "sender", "size", "nrcpt", "via", "store")
    } == {
        "queue_id": queue_id,
        "message_id": MESSAGE_ID,
        "sender": "me@localhost",
        "size": len(CONTENT),
        "nrcpt": 3,
        "via": "socket",
        "store": "local",
    }
    # the deferred recipient holds back the NDR of the first; a message with only a refusal gets one now
    bounced = await submit(client, GONE)
    (report,) = await wait_records(daemon, "report filed", 1)
    assert report["queue_id"] == bounced and report["report"] == "ndr" and report["nrcpt"] == 1
    assert report["store"] == "local"
    inbox = await client.ok("list", folder="inbox")
    assert [row["id"] for row in inbox] == [report["report_id"]]
    assert records(daemon, "report filed") == [report]  # none for the message still deferred


async def test_console_lines_read_like_postfix(
    root: Path, daemons: list[Any], smtp_server: ServerFactory
) -> None:
    server = smtp_server()
    daemon = await started(daemons, RelayDaemon(root, server.port, fmt="console"))
    client = await daemon.client()
    queue_id = await submit(client, OK, LATER, GONE)
    relay = re.escape(f"127.0.0.1:{server.port}")
    head = rf"^\S+Z \[info\s*\] {queue_id}: "  # a timestamp, the level, the queue id
    expected = {
        OK: _tail("sent", "2.0.0", "250 2.0.0 queued (in reply to end of DATA)"),
        LATER: _tail("deferred", "4.1.1", f"451 4.1.1 scripted reply for {LATER} (in reply to RCPT TO)"),
        GONE: _tail("bounced", "5.1.1", f"550 5.1.1 scripted reply for {GONE} (in reply to RCPT TO)"),
    }
    for rcpt, tail in expected.items():
        line = await daemon.wait_text(f"{queue_id}: to=<{rcpt}>")
        pattern = (
            rf"{head}to=<{re.escape(rcpt)}>, transport=relay, relay={relay}, delay=\d+\.\d\d, {tail}\s*$"
        )
        assert re.match(pattern, line), line
    accepted = await daemon.wait_text(f"{queue_id}: message-id=")
    assert re.match(
        rf"{head}message-id={MESSAGE_ID}, from=<me@localhost>, size={len(CONTENT)}, nrcpt=3, via=socket, "
        r"store=local\s*$",
        accepted,
    ), accepted
    bounced = await submit(client, GONE)
    report = await daemon.wait_text(f"{bounced}: ndr report filed")
    pattern = rf"^\S+Z \[info\s*\] {bounced}: ndr report filed for 1 recipient\(s\) as \S+ in store local "
    assert re.match(pattern + r"\(folder \S+\)\s*$", report), report


async def test_a_message_id_the_headers_preprocessor_adds_is_a_line(
    root: Path, daemons: list[Any], smtp_server: ServerFactory
) -> None:
    """A message without a Message-ID (cron's, mailx's) is accepted with none; the id it goes out with is
    logged when the ``headers`` preprocessor adds it, as Postfix's cleanup line, before its outcome
    (found by a first-day trial: the console never showed it)."""
    server = smtp_server()
    daemon = await started(daemons, RelayDaemon(root, server.port, fmt="console"))
    client = await daemon.client()
    queue_id = await submit(client, OK, content=b"From: cron@localhost\r\nSubject: job\r\n\r\noutput\r\n")
    accepted = await daemon.wait_text(f"{queue_id}: message-id=none")
    added = await daemon.wait_text(f"{queue_id}: message-id=<")
    sent = await daemon.wait_text(f"{queue_id}: to=<{OK}>")
    found = re.search(r"message-id=(<[^>]+>)\s*$", added)
    assert found is not None, added
    (got,) = server.handler.received
    assert f"Message-ID: {found.group(1)}\r\n".encode() in got.content
    assert (
        daemon.log.index(accepted.encode())
        < daemon.log.index(added.encode())
        < daemon.log.index(sent.encode())
    )
    with_id = await submit(client, OK)  # had one: no such line
    await daemon.wait_text(f"{with_id}: to=<{OK}>")
    assert not [
        line for line in daemon.log if f"{with_id}: message-id=<".encode() in line and b"from=" not in line
    ]


def _tail(status: str, dsn: str, reply: str) -> str:
    return re.escape(f"dsn={dsn}, status={status} ({reply})")


async def test_a_dead_relay_is_one_warning_however_many_messages_and_one_when_it_is_back(
    root: Path, daemons: list[Any], smtp_server: ServerFactory
) -> None:
    port = free_port()  # nothing listens here yet
    daemon = await started(daemons, RelayDaemon(root, port))
    client = await daemon.client()
    watch = await daemon.client()
    await watch.stream.send(b'{"id": "w", "cmd": "subscribe"}\n')
    with anyio.fail_after(10):
        assert (await watch.line())["event"]["type"] == "subscribed"
    ids = [await submit(client, f"n{i}@example.net") for i in range(4)]
    # each first attempt over (its event comes once the message is unlocked), so the flush tries all again
    seen = await _events(
        watch, lambda seen: {e.get("id") for e in seen if e["type"] == "deferred"} >= set(ids)
    )
    await client.ok("flush", force=True)
    await wait_records(daemon, "delivery", 8, lambda r: r["status"] == "deferred")
    (down,) = records(daemon, "relay down")
    assert (
        down["level"] == "warning" and down["transport"] == "relay" and down["relay"] == f"127.0.0.1:{port}"
    )
    assert "cannot connect" in down["reason"] and down["dsn"] == "4.4.1"

    (row,) = [r for r in await client.ok("status") if r["name"] == "relay"]
    assert "failure" in row["status"] and "available" not in row["status"]
    assert "cannot connect" in row["last_error"] and isinstance(row["since"], float)
    shown = (await run(*ctl(daemon, "status"), check=True)).stdout.decode()
    assert re.search(
        r"^transport:relay: failing since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: .*cannot connect", shown, re.M
    ), shown
    (event,) = [e for e in seen if e["type"] == "status_changed" and e["state"] == "failing"]
    assert event["entry_id"] == "transport:relay"
    assert "cannot connect" in event["last_error"]

    server = smtp_server(port=port)
    result = await client.ok("flush", force=True)
    assert result["sent"] == 4
    sent = await wait_records(daemon, "delivery", 4, lambda r: r["status"] == "sent")
    assert sorted(r["queue_id"] for r in sent) == sorted(ids)
    (up,) = records(daemon, "relay up")
    assert up["level"] == "warning" and up["relay"] == f"127.0.0.1:{port}" and up["down_for"] >= 0
    assert len(records(daemon, "relay down")) == 1 and len(server.handler.received) == 4
    (row,) = [r for r in await client.ok("status") if r["name"] == "relay"]
    assert "available" in row["status"] and "failure" not in row["status"]
    seen = await _events(watch, lambda seen: any(e.get("was") == "failing" for e in seen))
    (event,) = [e for e in seen if e["type"] == "status_changed" and e.get("was") == "failing"]
    assert event["entry_id"] == "transport:relay" and event["last_error"] is None


async def test_operator_actions_are_a_line_each_and_a_flush_none(root: Path, daemons: list[Any]) -> None:
    """hold, release and abort each log one line naming the message; a flush (``sendmail -q`` from cron,
    every minute) logs none of its own: its outcomes have theirs (found by a first-day trial: an abort
    left no trace, and each flush wrote six ``status changed`` lines)."""
    daemon = await started(daemons, RelayDaemon(root, free_port()))  # nothing listens there: it waits
    client = await daemon.client()
    queue_id = await submit(client, "later@example.net")
    await wait_records(daemon, "delivery", 1, lambda r: r["queue_id"] == queue_id)
    await client.ok("hold", id=queue_id)
    await client.ok("release", id=queue_id)
    await client.ok("flush")
    await client.ok("flush", force=True)
    await client.ok("abort", id=queue_id)
    await wait_records(daemon, "message aborted", 1)  # the lines before it are read too
    for action in ("held", "released", "aborted"):
        assert [(r["queue_id"], r["store"]) for r in records(daemon, f"message {action}")] == [
            (queue_id, "local")
        ]
    assert records(daemon, "status changed") == []


async def _events(watch: Client, enough: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    """Events from a subscription until ``enough`` says so."""
    seen: list[dict[str, Any]] = []
    with anyio.fail_after(30):
        while not enough(seen):
            seen.append((await watch.line())["event"])
    return seen


async def test_refused_login_is_a_warning_with_the_servers_words_and_no_secret(
    root: Path, daemons: list[Any], smtp_server: ServerFactory
) -> None:
    server = smtp_server()
    password_file = root / "relay-password"
    password_file.write_text("wrong-pw-4711\n")
    daemon = await started(
        daemons,
        RelayDaemon(root, server.port, level="debug", username=USER, password_file=str(password_file)),
    )
    client = await daemon.client()
    await submit(client, OK)
    (refused,) = await wait_records(daemon, "relay login refused", 1)
    assert refused["level"] == "warning" and refused["dsn"] == "4.7.8"
    assert "535 5.7.8 Authentication credentials invalid (in reply to AUTH PLAIN)" in refused["reason"]
    (line,) = await wait_records(daemon, "delivery", 1)
    assert line["status"] == "deferred" and line["dsn"] == "4.7.8"
    (row,) = [r for r in await client.ok("status") if r["name"] == "relay"]
    assert "failure" in row["status"] and "Authentication credentials invalid" in row["last_error"]
    log = b"".join(daemon.log)
    assert b"wrong-pw-4711" not in log
    assert base64.b64encode(f"\0{USER}\0wrong-pw-4711".encode()) not in log
    assert base64.b64encode(b"wrong-pw-4711") not in log


async def test_untrusted_certificate_is_a_warning_with_the_reason(
    root: Path, daemons: list[Any], smtp_server: ServerFactory, certs: Certs
) -> None:
    server = smtp_server(tls_context=certs.server)  # STARTTLS with a certificate no system CA signed
    daemon = await started(daemons, RelayDaemon(root, server.port, tls="starttls"))
    client = await daemon.client()
    await submit(client, OK)
    (failed,) = await wait_records(daemon, "relay TLS failed", 1)
    assert failed["level"] == "warning" and failed["dsn"] == "4.7.5"
    assert "certificate not verified" in failed["reason"] and "local issuer" in failed["reason"], failed
    (row,) = [r for r in await client.ok("status") if r["name"] == "relay"]
    assert "failure" in row["status"] and "certificate not verified" in row["last_error"]
    assert not server.handler.received


async def test_debug_lines_show_the_connection_and_replies_but_never_the_auth_exchange(
    root: Path, daemons: list[Any], smtp_server: ServerFactory
) -> None:
    server = smtp_server()
    password_file = root / "relay-password"
    password_file.write_text(PASSWORD + "\n")
    daemon = RelayDaemon(root, server.port, level="debug", username=USER, password_file=str(password_file))
    await started(daemons, daemon)
    client = await daemon.client()
    for _ in range(2):
        queue_id = await submit(client, OK)
        await wait_records(daemon, "delivery", 1, lambda r, q=queue_id: r["queue_id"] == q)
    assert await daemon.stop() == 0
    relay = f"127.0.0.1:{server.port}"
    (opened,) = records(daemon, "connection opened")
    assert opened["level"] == "debug" and opened["relay"] == relay and opened["authenticated"] is True
    assert "auth" in opened["extensions"]
    (reused,) = records(daemon, "connection reused")
    assert reused["relay"] == relay
    replies = [(r["command"], r["code"]) for r in records(daemon, "reply")]
    assert replies.count(("end of DATA", 250)) == 2 and replies.count(("MAIL FROM", 250)) == 2
    (closed,) = records(daemon, "connection closed")
    assert closed["reason"] == "stopping" and closed["transactions"] == 2
    log = b"".join(daemon.log)
    assert PASSWORD.encode() not in log
    for secret in (f"\0{USER}\0{PASSWORD}", PASSWORD):
        assert base64.b64encode(secret.encode()) not in log
    assert not re.search(rb'AUTH (PLAIN|LOGIN)|"code": (334|235)', log)  # no AUTH command nor its answers


async def test_sendmail_lines_with_and_without_the_daemon(root: Path, daemons: list[Any]) -> None:
    """Found through the configuration alone (its ``[control] socket``, no $SPOOLERD_SOCKET): without the
    daemon the command queues the message itself and logs that to syslog, not to the stderr cron mails;
    with it, the daemon's log has the line."""
    daemon = RelayDaemon(root, free_port())
    cfg = daemon.write_config()
    syslog = root / "syslog.sock"
    argv = [sys.executable, "-m", "spoolerd.sendmail", "-i", "alice@localhost"]
    env = {**os.environ, "SPOOLERD_CONFIG": str(cfg), "SPOOLERD__LOG__SYSLOG": str(syslog)}
    env.pop("SPOOLERD_SOCKET", None)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(syslog))
        receiver.settimeout(60)  # a line that never comes fails here, not at the suite's timeout
        done = await anyio.run_process(argv, input=CONTENT, env=env, cwd=root, check=False)
        assert done.returncode == 0 and done.stderr == b"", done.stderr  # cron would mail a word said here
        datagram = receiver.recv(65536)
    tag, _, text = datagram.partition(b": ")
    assert re.fullmatch(rb"<22>spoolerd-sendmail\[\d+\]", tag)  # facility mail, level info
    line = json.loads(text)
    assert line["event"] == "accepted" and line["via"] == "sendmail" and line["nrcpt"] == 1
    assert line["message_id"] == MESSAGE_ID and line["sender"] == "me@localhost" and line["store"] == "local"
    assert line["size"] == len(CONTENT)
    await started(daemons, daemon)
    done = await anyio.run_process(argv, input=CONTENT, env=env, cwd=root, check=True)
    assert done.stderr == b""  # the daemon took it: its log says so, not the command
    status = [sys.executable, "-m", "spoolerd.ctl", "--json", "status"]  # spoolerctl finds it the same way
    assert json.loads((await anyio.run_process(status, env=env, cwd=root, check=True)).stdout)
    (accepted,) = await wait_records(daemon, "accepted", 1)
    assert accepted["via"] == "socket" and accepted["nrcpt"] == 1 and accepted["queue_id"] != line["queue_id"]
    delivered = await wait_records(daemon, "delivery", 2, lambda r: r["status"] == "sent")
    assert {r["queue_id"] for r in delivered} == {line["queue_id"], accepted["queue_id"]}
    assert {(r["transport"], r["relay"]) for r in delivered} == {("loopback", None)}


def test_sendmail_without_the_daemon_tells_a_terminal(root: Path) -> None:
    """Run by a person (stderr a terminal), the command that queued the message itself says so there."""
    cfg = RelayDaemon(root, free_port()).write_config()
    env = {**os.environ, "SPOOLERD_CONFIG": str(cfg), "SPOOLERD__LOG__SYSLOG": ""}
    env.pop("SPOOLERD_SOCKET", None)
    controller, terminal = pty.openpty()
    with os.fdopen(controller, "rb", buffering=0) as screen:
        argv = [sys.executable, "-m", "spoolerd.sendmail", "-i", "alice@localhost"]
        done = subprocess.run(argv, input=CONTENT, stderr=terminal, env=env, cwd=root, check=False)
        os.close(terminal)
        shown = screen.read(65536)
    assert done.returncode == 0
    assert b"accepted" in shown and b"via" in shown and b"sendmail" in shown

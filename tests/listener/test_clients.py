"""Real clients against the listener: STARTTLS and implicit TLS with a trustme CA, AUTH right and wrong
(Python's smtplib), swaks, Postfix's smtp-source, and a private Postfix relaying into it."""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from tests.listener.conftest import PASSWORD, USER, ListenerDaemon, Raw, in_thread, message
from tests.peers import postfix
from tests.peers.ports import free_port

TLS = (
    'tls = "{tls}"\ncert_file = "{root}/cert.pem"\nkey_file = "{root}/key.pem"\n'
    'credentials_file = "{root}/users"'
)


def _need(program: str, reason: str | None = None) -> None:
    """Skip without the peer, except where CI requires every peer (SPOOLERD_REQUIRE_PEERS)."""
    reason = reason or (None if shutil.which(program) else f"{program} is not installed")
    if reason is not None:
        if os.environ.get("SPOOLERD_REQUIRE_PEERS"):
            pytest.fail(reason)
        pytest.skip(reason)


def _tls(d: Any, tls: str = "starttls") -> str:
    return TLS.format(tls=tls, root=d)


async def test_starttls_then_auth_right_and_wrong(make_daemon: Callable[..., Any], root: Any) -> None:
    # not loopback-only: AUTH only after STARTTLS; nobody may relay without it (no allowed network)
    d: ListenerDaemon = await make_daemon(_tls(root) + "\nallowed_networks = []", host="0.0.0.0")

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with d.smtp() as s:
            s.ehlo("app.example")
            out["before"] = dict(s.esmtp_features)
            out["auth_before"] = s.docmd("AUTH", "PLAIN AGFsaWNlAHg=")
            s.mail("app@example.com")
            out["rcpt_before"] = s.rcpt("bob@localhost")
            s.rset()
            s.starttls(context=d.certs.client_context())
            s.ehlo("app.example")
            out["after"] = dict(s.esmtp_features)
            try:
                s.login(USER, "wrong password")
            except smtplib.SMTPAuthenticationError as exc:
                out["wrong"] = (exc.smtp_code, exc.smtp_error)
            out["right"] = s.login(USER, PASSWORD)
            out["sent"] = s.sendmail("app@example.com", ["bob@localhost"], message("secure"))
        return out

    out = await in_thread(run)
    assert "starttls" in out["before"] and "auth" not in out["before"]
    assert out["auth_before"][0] == 538
    assert out["rcpt_before"][0] == 530 and out["rcpt_before"][1].startswith(b"5.7.0")
    assert "starttls" not in out["after"] and out["after"]["auth"].split() == ["PLAIN", "LOGIN"]
    assert out["wrong"][0] == 535 and out["wrong"][1].startswith(b"5.7.8")
    assert out["right"][0] == 235 and out["sent"] == {}
    [row] = await d.inbox(1)
    header = (await d.fetch(row["id"])).split(b"\r\n\r\n")[0]
    assert b"with ESMTPSA" in header and b"(using TLSv1.3 with cipher " in header
    assert b"(Authenticated sender: alice)" in header
    accepted = await d.wait_log(lambda e: e.get("event") == "accepted")
    assert accepted["user"] == USER and accepted["tls"].startswith("TLSv1.3")
    failed = await d.wait_log(lambda e: e.get("event") == "smtp authentication failed")
    assert PASSWORD not in str(d.lines) and "wrong password" not in str(d.lines)
    assert failed["user"] == USER


async def test_auth_required_refuses_mail_until_authenticated(
    make_daemon: Callable[..., Any], root: Any
) -> None:
    d: ListenerDaemon = await make_daemon(_tls(root, "implicit") + '\nauth = "required"')

    def run() -> tuple[Any, ...]:
        with smtplib.SMTP_SSL("127.0.0.1", d.port, context=d.certs.client_context(), timeout=30) as s:
            s.ehlo("app")
            refused = s.mail("app@example.com")
            s.login(USER, PASSWORD)
            return refused, s.sendmail("app@example.com", ["bob@localhost"], message("implicit"))

    refused, sent = await in_thread(run)
    assert refused[0] == 530 and refused[1].startswith(b"5.7.0")
    assert sent == {}
    [row] = await d.inbox(1)
    assert b"with ESMTPSA" in await d.fetch(row["id"])


async def test_a_loopback_listener_offers_auth_without_tls(
    make_daemon: Callable[..., Any], root: Any
) -> None:
    d: ListenerDaemon = await make_daemon(f'credentials_file = "{root}/users"')
    with Raw(d.port) as c:
        assert "250-AUTH PLAIN LOGIN" in c.cmd("EHLO x")
        assert c.cmd("HELP AUTH") == "250 Syntax: AUTH <mechanism>"  # its own AUTH keeps aiosmtpd's help
        # and its own commands have theirs (HELP MAIL answered 501: found by a first-day trial)
        assert c.cmd("HELP MAIL") == "250 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"
        listed = c.cmd("HELP")
        assert all(verb in listed for verb in ("EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT"))


async def test_auth_without_credentials_is_not_available(make_daemon: Callable[..., Any]) -> None:
    """A listener with no credentials file does not offer AUTH, and refuses it as Postfix does (found by
    a first-day trial: aiosmtpd's hook answered 235 to any login, though mail was still not relayed)."""
    d: ListenerDaemon = await make_daemon("")
    with Raw(d.port) as c:
        assert "AUTH" not in c.cmd("EHLO x")
        assert c.cmd("AUTH PLAIN AGFsaWNlAHdyb25n").startswith("503 5.5.1")
        assert c.cmd("MAIL FROM:<a@example.com>").startswith("250")


async def test_swaks_starttls_auth_login_pipelined(make_daemon: Callable[..., Any], root: Any) -> None:
    _need("swaks")
    d: ListenerDaemon = await make_daemon(_tls(root), host="0.0.0.0")
    argv = ["swaks", "--server", f"127.0.0.1:{d.port}", "--from", "app@example.com", "--to", "bob@localhost"]
    argv += ["--tls", "--auth", "LOGIN", "--auth-user", USER, "--auth-password", PASSWORD, "--pipeline"]
    argv += ["--header", "Subject: from swaks", "--timeout", "30"]
    done = await in_thread(
        lambda: subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "<~  250 2.0.0 Ok: queued as " in done.stdout
    assert "235 2.7.0 Authentication successful" in done.stdout
    [row] = await d.inbox(1)
    assert row["subject"] == "from swaks"


async def test_smtp_source_load(daemon: ListenerDaemon) -> None:
    _need("smtp-source")
    argv = [
        "smtp-source",
        "-s",
        "4",
        "-m",
        "40",
        "-l",
        "4096",
        "-f",
        "app@example.com",
        "-t",
        "load@remote.test",
    ]
    argv.append(f"127.0.0.1:{daemon.port}")
    done = await in_thread(
        lambda: subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    )
    assert done.returncode == 0, done.stderr
    await daemon.drained()
    assert len(daemon.logged("accepted")) == 40
    assert len(daemon.delivered_log.read_text().splitlines()) == 40
    assert (await daemon.status_row())["counters"]["accepted"] == 40


async def test_postfix_relays_into_the_listener(daemon: ListenerDaemon) -> None:
    _need("postfix", postfix.available())
    mta = postfix.Postfix(free_port(), relayhost=f"[127.0.0.1]:{daemon.port}")
    mta.start()
    try:

        def submit() -> dict[str, Any]:
            with smtplib.SMTP("127.0.0.1", mta.port, timeout=30) as s:
                return s.sendmail("app@example.com", ["bob@localhost"], message("via postfix"))

        assert await in_thread(submit) == {}
        [row] = await daemon.inbox(1)
        content = await daemon.fetch(row["id"])
        assert content.count(b"Received: ") == 2 and b"by postfix.test (Postfix)" in content
        accepted = await daemon.wait_log(lambda e: e.get("event") == "accepted")
        assert accepted["sender"] == "app@example.com"
    finally:
        mta.stop()

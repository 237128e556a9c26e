"""RFC 3461 DSN parameters end to end: given to the SMTP listener (smtplib), to ``spoolerd-sendmail``
(-N, -R, -V) and to ``sendmail -bs``, kept with the message, and honoured by the reports the daemon files
in the sender's Inbox, which are parsed back here with the email package."""

from __future__ import annotations

import base64
import email
import email.policy
import os
import subprocess
import sys
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from tests.listener.conftest import ListenerDaemon, Raw, in_thread, message

SENDMAIL = str(Path(sys.executable).parent / "spoolerd-sendmail")


def _env(d: ListenerDaemon) -> dict[str, str]:
    return {**os.environ, "SPOOLERD_SOCKET": str(d.socket)}


def _parts(raw: bytes) -> tuple[Message, list[Message], Message]:
    """A report's per-message fields, its per-recipient blocks and the returned original."""
    report = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert report.get_content_type() == "multipart/report" and not report.defects
    _text, status, returned = report.get_payload()  # type: ignore[misc]
    per_message, *blocks = status.get_payload()
    return per_message, blocks, returned


async def _reports(d: ListenerDaemon, count: int) -> dict[str, bytes]:
    """The Inbox once it holds ``count`` messages: each report's content by its class's last word."""
    rows = await d.inbox(count)
    await d.drained()
    ctl = await d.client()
    rows = await ctl.ok("list", folder="inbox")
    assert len(rows) == count, rows  # nothing more came once the queue was empty
    return {
        r["class"].rsplit(".", 1)[-1]: await d.fetch(r["id"])
        for r in rows
        if r["class"].startswith("REPORT.")
    }


@pytest.mark.parametrize(("ret", "returned"), [("HDRS", "text/rfc822-headers"), ("FULL", "message/rfc822")])
async def test_smtp_dsn_parameters_reach_the_ndr(daemon: ListenerDaemon, ret: str, returned: str) -> None:
    def run() -> Any:
        with daemon.smtp() as s:
            s.ehlo("dsn")
            assert s.has_extn("dsn")
            return s.sendmail(
                "me@localhost",
                ["nobody@remote.test", "bob@localhost", "carol@localhost"],
                message("full", to="nobody@remote.test", body="the body line\r\n"),
                mail_options=[f"RET={ret}", "ENVID=QQ+2B1+3Dz"],
                rcpt_options=["NOTIFY=FAILURE ORCPT=rfc822;old+2Bx@remote.test"],
            )

    assert await in_thread(run) == {}
    # bob and carol's store gets one copy (NOTIFY=FAILURE: no DR); the sender gets one NDR for nobody
    reports = await _reports(daemon, 2)
    assert list(reports) == ["NDR"]
    per_message, blocks, original = _parts(reports["NDR"])
    assert per_message["Original-Envelope-Id"] == "QQ+1=z"  # decoded from xtext
    [block] = blocks
    assert block["Final-Recipient"] == "rfc822; nobody@remote.test"
    assert block["Original-Recipient"] == "rfc822; old+x@remote.test"
    assert block["Action"] == "failed"
    assert original.get_content_type() == returned
    assert (b"the body line" in reports["NDR"]) == (ret == "FULL")


async def test_notify_success_gets_a_dr_and_never_no_report(daemon: ListenerDaemon) -> None:
    def run() -> Any:
        with daemon.smtp() as s:
            s.ehlo("dsn")
            s.mail("me@localhost", ["ENVID=env-2"])
            s.rcpt("bob@localhost", ["NOTIFY=SUCCESS", "ORCPT=rfc822;robert@localhost"])
            s.rcpt("nobody@remote.test", ["NOTIFY=NEVER"])
            s.rcpt("carol@localhost", ["NOTIFY=DELAY,FAILURE"])
            code, _ = s.data(message("mixed"))
            return code

    assert await in_thread(run) == 250
    reports = await _reports(daemon, 2)  # the local copy (bob, carol), a DR for bob; no NDR for nobody
    assert list(reports) == ["DR"]
    per_message, blocks, original = _parts(reports["DR"])
    assert per_message["Original-Envelope-Id"] == "env-2"
    [block] = blocks
    assert (block["Final-Recipient"], block["Action"]) == ("rfc822; bob@localhost", "delivered")
    assert block["Original-Recipient"] == "rfc822; robert@localhost"
    assert original.get_content_type() == "text/rfc822-headers"


BAD = [
    ("MAIL FROM:<me@localhost> RET=SOME", "RET"),
    ("MAIL FROM:<me@localhost> ENVID=" + "x" * 101, "ENVID"),
    ("MAIL FROM:<me@localhost> ENVID=a+zz", "xtext"),
    ("RCPT TO:<bob@localhost> NOTIFY=NEVER,SUCCESS", "NOTIFY"),
    ("RCPT TO:<bob@localhost> ORCPT=nosemicolon", "ORCPT"),
]


async def test_bad_dsn_parameters_get_501(daemon: ListenerDaemon) -> None:
    def run() -> list[str]:
        with Raw(daemon.port) as c:
            c.cmd("EHLO dsn")
            replies = [c.cmd(command) for command, _param in BAD if command.startswith("MAIL")]
            assert c.cmd("MAIL FROM:<me@localhost>").startswith("250 ")
            return replies + [c.cmd(command) for command, _param in BAD if command.startswith("RCPT")]

    for reply, (_command, param) in zip(await in_thread(run), BAD, strict=True):
        assert reply.startswith("501 5.5.4 ") and param in reply, reply


async def test_sendmail_ret_hdrs_envid_and_notify(daemon: ListenerDaemon) -> None:
    argv = [SENDMAIL, "-f", "me@localhost", "-R", "hdrs", "-V", "x", "-N", "failure,success"]
    argv += ["nobody@remote.test", "bob@localhost"]
    done: Any = await in_thread(
        lambda: subprocess.run(
            argv,
            input=message("via sendmail", to="nobody@remote.test", body="secret body\r\n"),
            capture_output=True,
            timeout=60,
            check=False,
            env=_env(daemon),
        )
    )
    assert done.returncode == 0, done.stderr
    reports = await _reports(daemon, 3)  # bob's copy, a DR for bob, an NDR for nobody
    assert sorted(reports) == ["DR", "NDR"]
    per_message, [block], original = _parts(reports["NDR"])
    assert per_message["Original-Envelope-Id"] == "x"
    assert block["Final-Recipient"] == "rfc822; nobody@remote.test" and block["Original-Recipient"] is None
    assert original.get_content_type() == "text/rfc822-headers" and b"secret body" not in reports["NDR"]


async def test_sendmail_bs_passes_rcpt_parameters_to_the_daemon(daemon: ListenerDaemon) -> None:
    script = b"EHLO local\r\nMAIL FROM:<me@localhost> RET=HDRS ENVID=bs+2D1\r\n"
    script += b"RCPT TO:<nobody@remote.test> ORCPT=rfc822;first@remote.test\r\n"
    script += b"RCPT TO:<bob@localhost> NOTIFY=NEVER\r\nDATA\r\n" + message("over -bs") + b".\r\nQUIT\r\n"
    done: Any = await in_thread(
        lambda: subprocess.run(
            [SENDMAIL, "-bs"], input=script, capture_output=True, timeout=60, check=False, env=_env(daemon)
        )
    )
    assert done.returncode == 0 and b"250 2.0.0 Ok: queued as " in done.stdout, done.stdout
    reports = await _reports(daemon, 2)  # bob's copy and the NDR (no NOTIFY: the default)
    per_message, [block], original = _parts(reports["NDR"])
    assert per_message["Original-Envelope-Id"] == "bs-1"
    assert block["Original-Recipient"] == "rfc822; first@remote.test"
    assert original.get_content_type() == "text/rfc822-headers"


async def test_control_submit_refuses_bad_dsn_arguments(daemon: ListenerDaemon) -> None:
    ctl = await daemon.client()
    encoded = base64.b64encode(message("socket")).decode()
    bad_args: list[dict[str, Any]] = [
        {"notify": "sometimes"},
        {"ret": "all"},
        {"envid": ""},
        {"recipient_dsn": {"bob@localhost": {"orcpt": "x"}}},
    ]
    for bad in bad_args:
        answer = await ctl.call("submit", message=encoded, recipients=["bob@localhost"], **bad)
        assert not answer["ok"] and answer["error"]["code"] == "invalid_argument", answer
    assert await ctl.ok("list", folder="outbox") == []

"""RFC 3461 report requests given to ``spoolerd-sendmail`` (with the daemon up, and written into the
store directly when it is down) and to ``spoolerctl submit``: an alias passes NOTIFY on to what it expands
to, and the reports the daemon files quote the ENVID and return what RET asked for."""

from __future__ import annotations

import email
import email.policy
from email.message import Message

import anyio
import pytest

from tests.control.conftest import Daemon, short_root
from tests.control.test_addresses import cat, submit_with_sendmail
from tests.control.test_tools import ctl, inbox, run

ALIASES = """
[aliases]
team = ["alice@localhost", "bob@remote.test"]
"""


async def _reports_once_sent(d: Daemon, count: int) -> dict[str, Message]:
    """The Inbox's reports by kind once it holds ``count`` messages (flushing until then)."""
    with anyio.fail_after(30):
        while len(rows := await inbox(d)) < count:
            await run(*ctl(d, "flush"), check=True)
    reports = {}
    for row in rows:
        if str(row["class"]).startswith("REPORT."):
            raw = await cat(d, row["id"])
            reports[str(row["class"]).rsplit(".", 1)[-1]] = email.message_from_bytes(
                raw, policy=email.policy.compat32
            )
    return reports


def _status(report: Message) -> tuple[Message, list[Message], str]:
    _text, status, returned = report.get_payload()  # type: ignore[misc]
    per_message, *blocks = status.get_payload()
    return per_message, blocks, returned.get_content_type()


@pytest.mark.parametrize("up", [True, False], ids=["daemon-up", "daemon-down"])
async def test_sendmail_n_r_v_through_an_alias(up: bool) -> None:
    root = short_root()
    d = Daemon(root, ALIASES)
    if up:
        await d.start()
    args = (
        "-f",
        "me@localhost",
        "-N",
        "success,failure",
        "-R",
        "hdrs",
        "-V",
        "run 42",
        "team",
        "nobody@remote.test",
    )
    message = b"Subject: dsn\n\nthe body\n"
    assert await submit_with_sendmail(d, *args, stdin=message, up=up) == 0
    if not up:
        await d.start()
    try:
        reports = await _reports_once_sent(d, 3)  # alice's copy, one DR (alice, bob), one NDR (nobody)
        assert sorted(reports) == ["DR", "NDR"]
        per_message, blocks, returned = _status(reports["DR"])
        assert per_message["Original-Envelope-Id"] == "run 42"
        assert sorted(b["Final-Recipient"] for b in blocks) == [
            "rfc822; alice@localhost",
            "rfc822; bob@remote.test",
        ]
        per_message, [block], returned = _status(reports["NDR"])
        assert per_message["Original-Envelope-Id"] == "run 42"
        assert block["Final-Recipient"] == "rfc822; nobody@remote.test"
        assert returned == "text/rfc822-headers"  # -R hdrs
    finally:
        assert await d.stop() == 0


async def test_spoolerctl_submit_notify_never_and_a_bad_value() -> None:
    d = Daemon(short_root(), ALIASES)
    await d.start()
    try:
        mail = d.root / "mail.eml"
        mail.write_bytes(b"From: me@localhost\nTo: nobody@remote.test\nSubject: quiet\n\nx\n")
        bad = await run(*ctl(d, "submit", str(mail), "--notify", "sometimes"))
        assert bad.returncode == 1 and b"NOTIFY" in bad.stderr + bad.stdout, bad
        done = await run(*ctl(d, "submit", str(mail), "--notify", "never", "--envid", "e1"), check=True)
        assert b"queued" in done.stdout
        sent = await run(*ctl(d, "submit", str(mail), "--ret", "full", "--envid", "e2"), check=True)
        assert b"queued" in sent.stdout
        reports = await _reports_once_sent(d, 1)  # the one NDR: for the second message only
        per_message, _blocks, returned = _status(reports["NDR"])
        assert per_message["Original-Envelope-Id"] == "e2" and returned == "message/rfc822"
        await run(*ctl(d, "flush"), check=True)
        assert len(await inbox(d)) == 1  # "never" failed without a report
    finally:
        assert await d.stop() == 0

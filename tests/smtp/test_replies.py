"""The SMTP transport's sans-io rules: reply → outcome, what a message needs, MAIL options."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from spoolerd.transport import OutcomeKind
from transports.smtp import SmtpSettings
from transports.smtp.replies import (
    Reply,
    expected,
    mail_options,
    no_reply,
    outcome_for,
    requirements,
)
from transports.smtp.wire import ReplyParser, crlf, data_payload


@pytest.mark.parametrize(
    ("code", "text", "kind", "status", "detail"),
    [
        (250, "2.0.0 Ok: queued as 1234", OutcomeKind.DELIVERED, "2.0.0", "Ok: queued as 1234"),
        (
            550,
            "5.1.1 <x@y>: Recipient address rejected",
            OutcomeKind.FAILED,
            "5.1.1",
            "<x@y>: Recipient address rejected",
        ),
        (550, "No such user", OutcomeKind.FAILED, "5.0.0", "No such user"),
        (450, "4.2.0 Mailbox busy", OutcomeKind.DEFERRED, "4.2.0", "Mailbox busy"),
        (421, "Service not available", OutcomeKind.DEFERRED, "4.0.0", "Service not available"),
        (550, "4.1.1 mismatched class", OutcomeKind.FAILED, "5.0.0", "4.1.1 mismatched class"),
        (552, "5.3.4 Message\ntoo big", OutcomeKind.FAILED, "5.3.4", "Message too big"),
    ],
)
def test_reply_outcomes(code: int, text: str, kind: OutcomeKind, status: str, detail: str) -> None:
    outcome = outcome_for(Reply(code, text, "RCPT TO"), "relay:25")
    assert (outcome.kind, outcome.code, outcome.status) == (kind, code, status)
    # the reply as the relay gave it, on one line: no status made up where it gave none (as Postfix)
    assert outcome.diagnostic == f"relay:25 said: {code} {' '.join(text.split())} (in reply to RCPT TO)"
    assert Reply(code, text, "x").detail == detail


@pytest.mark.parametrize(
    ("code", "command"),
    [(354, "RCPT TO"), (252, "RCPT TO"), (251, "MAIL FROM"), (250, "DATA"), (220, "end of DATA")],
)
def test_replies_smtp_does_not_allow_there_are_never_success(code: int, command: str) -> None:
    reply = Reply(code, "2.0.0 fine", command)
    assert not expected(reply)
    outcome = outcome_for(reply, "relay:25")
    assert (outcome.kind, outcome.code, outcome.status) == (OutcomeKind.DEFERRED, code, "4.5.0")
    assert outcome.diagnostic.startswith(f"relay:25 gave an unexpected reply: {code} ")


def test_no_reply_has_no_code() -> None:
    o = no_reply("timed out", "relay:25")
    assert (o.kind, o.code, o.status, o.diagnostic) == (
        OutcomeKind.DEFERRED,
        None,
        "4.4.2",
        "relay:25: timed out",
    )


def test_wire_content_and_requirements() -> None:
    assert crlf(b"S: a\n\nb\rc\r\nd") == b"S: a\r\n\r\nb\r\nc\r\nd\r\n"  # a lone CR ends a body line
    assert crlf(b"S: a\rB: b\n\nc") == b"S: a\r\n B: b\r\n\r\nc\r\n"  # but no header line: a fold
    assert crlf(b"a\r\n") == b"a\r\n"
    assert crlf(b"a\r\nb") == b"a\r\nb\r\n"
    ascii_only = requirements(b"Subject: x\r\n\r\nbody\r\n", "a@b", ["c@d"])
    assert (ascii_only.size, ascii_only.eight_bit, ascii_only.smtputf8) == (20, False, False)
    body = requirements("S: x\r\n\r\n\u00e9\r\n".encode(), "a@b", ["c@d"])
    assert (body.eight_bit, body.smtputf8) == (True, False)
    header = requirements("S: \u00e9\r\n\r\nx\r\n".encode(), "a@b", ["c@d"])
    assert (header.eight_bit, header.smtputf8) == (True, True)
    assert requirements(b"S: x\r\n\r\nx\r\n", "a@b", ["\u00e9@d"]).smtputf8


def test_mail_options() -> None:
    need = requirements("S: x\r\n\r\n\u00e9\r\n".encode(), "a@b", ["c@d"])
    assert mail_options(need, {"size": "1000", "8bitmime": ""}, "p") == [f"SIZE={need.size}", "BODY=8BITMIME"]
    assert mail_options(need, {"size": "0", "8bitmime": ""}, "p") == [f"SIZE={need.size}", "BODY=8BITMIME"]
    too_big = mail_options(need, {"size": "5"}, "p")
    assert not isinstance(too_big, list) and too_big.status == "5.3.4"
    no_8bit = mail_options(need, {}, "p")
    assert not isinstance(no_8bit, list) and no_8bit.status == "5.6.3"


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"host": "relay", "helo": "bad name"}, "neither a domain name"),
        ({"host": "relay\r\nX"}, "control characters"),
        ({"host": "relay", "username": "u"}, "give password_file or password_env"),
        ({"host": "relay", "password_env": "X"}, "no username"),
        ({"host": "relay", "username": "u", "auth": "xoauth2", "password_env": "X"}, "needs token_file"),
        ({"host": "relay", "username": "u", "password_env": "X", "password_file": "/f"}, "not both"),
        ({"host": "relay", "client_key": "/k"}, "client_key needs client_cert"),
        ({"host": "relay", "tls": "ssl"}, "tls"),
        ({"host": "relay", "password": "inline"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_named(settings: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        SmtpSettings.model_validate(settings)


def test_default_ports_follow_the_tls_mode() -> None:
    ports = {
        mode: SmtpSettings(host="r", tls=mode).effective_port for mode in ("starttls", "implicit", "none")
    }
    assert ports == {"starttls": 587, "implicit": 465, "none": 25}


def test_data_payload_stuffs_leading_dots() -> None:
    assert data_payload(b"a\r\n") == b"a\r\n.\r\n"
    assert data_payload(b".a\r\nb\r\n.\r\n..c\r\n") == b"..a\r\nb\r\n..\r\n...c\r\n.\r\n"


def test_reply_parser_splits_pipelined_and_multiline_replies() -> None:
    parser = ReplyParser()
    assert parser.feed(b"250-first\r\n250-sec") == []
    assert parser.feed(b"ond\r\n250 last\r\n354 go\r\n5") == [(250, "first\nsecond\nlast"), (354, "go")]
    assert parser.feed(b"50 5.1.1 no\r\n") == [(550, "5.1.1 no")]


@pytest.mark.parametrize(
    "garbage", [b"hello\r\n", b"25x ok\r\n", b"250" + b"x" * 9000 + b"\r\n", b"2" * 9000]
)
def test_reply_parser_refuses_what_is_not_smtp(garbage: bytes) -> None:
    from transports.smtp.wire import SmtpProtocolError

    with pytest.raises(SmtpProtocolError):
        ReplyParser().feed(garbage)

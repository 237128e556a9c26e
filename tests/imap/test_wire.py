"""The sans-io IMAP pieces, on bytes alone: mailbox names, responses as aioimaplib hands them over,
UID sets, fingerprints, what an APPEND's answer means, and the settings' checks."""

from __future__ import annotations

from typing import Any

import pytest
from aioimaplib.aioimaplib import Response
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from spoolerd.transport import OutcomeKind
from transports.imap.settings import ImapSettings
from transports.imap.upload import append_outcome
from transports.imap.wire import (
    fingerprint,
    mailbox_arg,
    parse_appenduid,
    parse_fetch,
    parse_search,
    parse_select,
    response_code,
    uid_set,
)


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("INBOX", '"INBOX"'),
        ("Entwürfe", '"Entw&APw-rfe"'),  # RFC 3501 5.1.3
        ("A&B", '"A&-B"'),
        ("日本語", '"&ZeVnLIqe-"'),
        ('say "hi" \\ bye', '"say \\"hi\\" \\\\ bye"'),
    ],
)
def test_mailbox_names_on_the_wire(name: str, wire: str) -> None:
    assert mailbox_arg(name) == wire


@pytest.mark.parametrize("name", ["", "a\r\nb", "x\x00", "tab\there"])
def test_mailbox_names_that_could_split_a_command_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="mailbox"):
        mailbox_arg(name)


def test_select_response() -> None:
    lines = [
        b"FLAGS (\\Answered \\Seen)",
        b"3 EXISTS",
        b"0 RECENT",
        b"OK [UIDVALIDITY 1795393549] UIDs valid",
        b"OK [UIDNEXT 4] Predicted next UID",
        b"[READ-WRITE] Select completed.",
    ]
    info = parse_select(lines)
    assert (info.uidvalidity, info.uidnext, info.exists, info.read_write) == (1795393549, 4, 3, True)


def test_search_response() -> None:
    assert parse_search([b"1 2 17", b"Search completed."]) == [1, 2, 17]
    assert parse_search([b"", b"Search completed."]) == []
    assert parse_search([b"SEARCH 5", b"done"]) == [5]


def test_fetch_response_with_literals_and_an_unsolicited_update() -> None:
    body = bytearray(b"Subject: x\r\n\r\n) * OK {3}\r\n")
    lines: list[Any] = [
        b"1 FETCH (UID 10 RFC822.SIZE 27 BODY[] {27}",
        body,
        b")",
        b"2 FETCH (FLAGS (\\Seen) UID 11)",  # another client flagged it: no literal
        b"3 FETCH (RFC822.SIZE 3 BODY[] {3}",
        bytearray(b"abc"),
        b" UID 12 FLAGS (\\Recent))",  # attributes after the literal
        b"Fetch completed.",
    ]
    got = parse_fetch(lines)
    assert [(f.uid, f.size, f.literal) for f in got] == [
        (10, 27, bytes(body)),
        (11, None, None),
        (12, 3, b"abc"),
    ]
    assert got[1].flags == ("\\Seen",) and got[2].flags == ("\\Recent",)


def test_uid_sets() -> None:
    assert uid_set([5, 1, 2, 3, 9, 10, 7]) == "1:3,5,7,9:10"
    assert uid_set([4]) == "4"
    with pytest.raises(ValueError):
        uid_set([])


_FIELD = st.tuples(
    st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True),
    st.from_regex(r"[ -~]{0,40}", fullmatch=True),
)
_HEADER = st.lists(_FIELD, min_size=1, max_size=6).map(
    lambda fields: b"".join(f"{name}: {value}\r\n".encode() for name, value in fields)
)


@given(header=_HEADER, body=st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"\r\n")))
def test_fingerprint_is_the_same_from_the_message_and_from_its_header(header: bytes, body: bytes) -> None:
    """The downloaded message and what BODY.PEEK[HEADER] returns (the header and its blank line)."""
    content = header + b"\r\n" + body
    assert fingerprint(len(content), content) == fingerprint(len(content), header + b"\r\n")


@given(header=_HEADER, other=_HEADER)
def test_any_header_difference_tells_messages_apart(header: bytes, other: bytes) -> None:
    assume(header.rstrip(b"\r\n") != other.rstrip(b"\r\n"))
    content, lookalike = header + b"\r\nbody\r\n", other + b"\r\nbody\r\n"
    assert fingerprint(100, content) != fingerprint(100, lookalike)
    assert fingerprint(100, content) != fingerprint(101, content)


def test_messages_alike_in_size_and_sender_differ_by_subject() -> None:
    """The swap that lost mail: no Message-ID, no Date, one sender, the same size."""
    first = b"From: a@example.org\r\nSubject: one\r\n\r\nbody\r\n"
    second = b"From: a@example.org\r\nSubject: two\r\n\r\nbody\r\n"
    assert fingerprint(len(first), first) != fingerprint(len(second), second)


def test_response_codes() -> None:
    code = response_code(b"[TRYCREATE] Mailbox doesn't exist: Nope")
    assert (code.name, code.text) == ("TRYCREATE", "Mailbox doesn't exist: Nope")
    assert parse_appenduid(b"[APPENDUID 1795393549 7] Append completed.") == (1795393549, 7)
    assert parse_appenduid(b"Append completed.") is None
    assert response_code(b"plain text").name == ""


@pytest.mark.parametrize(
    ("result", "text", "kind", "status"),
    [
        ("OK", b"[APPENDUID 3 9] done", OutcomeKind.DELIVERED, "2.0.0"),
        ("NO", b"[OVERQUOTA] Quota exceeded", OutcomeKind.DEFERRED, "4.2.2"),
        ("NO", b"[UNAVAILABLE] try later", OutcomeKind.DEFERRED, "4.4.2"),
        ("NO", b"[TOOBIG] too big", OutcomeKind.FAILED, "5.3.4"),
        ("NO", b"[NOPERM] no", OutcomeKind.FAILED, "5.7.1"),
        ("NO", b"something odd", OutcomeKind.DEFERRED, "4.2.0"),
        ("BAD", b"Invalid arguments", OutcomeKind.FAILED, "5.5.2"),
    ],
)
def test_append_answers(result: str, text: bytes, kind: OutcomeKind, status: str) -> None:
    outcome = append_outcome(Response(result, [text]), "Archive", "imap.test:993")
    assert (outcome.kind, outcome.status) == (kind, status)
    assert "Archive" in outcome.diagnostic


BASE = {"host": "imap.test", "username": "me", "password_env": "IMAP_PW"}


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"after_download": "move"}, "move_to"),
        ({"move_to": "Archive"}, "move_to"),
        ({"after_download": "move", "move_to": "INBOX"}, "move_to is one of the mailboxes"),
        ({"mailboxes": ["INBOX", "INBOX"]}, "twice"),
        ({"mailboxes": ["bad\r\nname"]}, "control character"),
        ({"address_types": ["IMAP"]}, "upload_mailbox"),
        ({"upload_mailbox": "Archive"}, "address_types or addresses"),
        ({"addresses": ["nobody"]}, "address"),
        ({"auth": "xoauth2"}, "token"),
        ({"idle_renew": 1800}, "less than or equal to 1740"),
        ({"host": "imap.test\r\nx"}, "control characters"),
    ],
)
def test_settings_problems_are_named(extra: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        ImapSettings.model_validate(BASE | extra)


def test_default_ports_follow_tls() -> None:
    assert ImapSettings.model_validate(BASE).effective_port == 993
    assert ImapSettings.model_validate(BASE | {"tls": "starttls"}).effective_port == 143

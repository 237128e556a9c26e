"""The listener's sans-io parts: MAIL/RCPT parameters (hypothesis), line endings and NULs, the Received
field, the credentials file."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolerd.dsn_params import Notify, Ret, xtext_encode
from spoolerd.errors import ConfigError
from spoolerd.listener.commands import CommandRefused, parse_mail, parse_rcpt, xtext_decode
from spoolerd.listener.content import Trace, normalize, received_field
from spoolerd.listener.credentials import hash_password, load_credentials
from spoolerd.listener_config import ListenerSection


def test_mail_parameters() -> None:
    mail = parse_mail(
        "FROM:<a@example.com> SIZE=100 BODY=8BITMIME RET=HDRS ENVID=x+2By SMTPUTF8 AUTH=<>",
        size_limit=1000,
        utf8_offered=True,
    )
    assert (mail.sender, mail.size, mail.body, mail.ret, mail.envid, mail.smtputf8) == (
        "a@example.com", 100, "8BITMIME", Ret.HDRS, "x+y", True
    )  # fmt: skip
    assert parse_mail("FROM:<>", size_limit=0, utf8_offered=True).sender == ""
    assert parse_mail("from: <@relay.example:a@example.com>", size_limit=0, utf8_offered=True).sender == (
        "a@example.com"
    )


@pytest.mark.parametrize(
    ("arg", "code"),
    [
        ("FROM:<a@example.com> SIZE=1001", "552 5.3.4"),
        ("FROM:<a@example.com> SIZE=big", "501 5.5.4"),
        ("FROM:<a@example.com> RET=ALL", "501 5.5.4"),
        ("FROM:<a@example.com> XFOO", "555 5.5.4"),
        ("FROM:<a@example.com> SIZE=1 SIZE=2", "501 5.5.4"),
        ("FROM:a@example.com", "501 5.5.4"),
        ("FROM:<a@example.com", "501 5.5.4"),
        ("FROM:<a@example.com>SIZE=1", "501 5.5.4"),
        ("FROM:<grüße@example.com>", "553 5.6.7"),
        ("FROM:<a@example.com> ENVID=a+0Ab", "501 5.5.4"),
        ("FROM:<a@example.com> ENVID=" + "x" * 101, "501 5.5.4"),
        ("FROM:<a@example.com> ENVID=a+zz", "501 5.5.4"),
        ("TO:<a@example.com>", "501 5.5.4"),
    ],
)
def test_mail_refusals(arg: str, code: str) -> None:
    with pytest.raises(CommandRefused) as refused:
        parse_mail(arg, size_limit=1000, utf8_offered=True)
    assert str(refused.value.reply).startswith(code)


def test_rcpt_parameters() -> None:
    rcpt = parse_rcpt(
        "TO:<b@example.com> NOTIFY=success,Failure ORCPT=rfc822;b+40example.com", smtputf8=False
    )
    assert rcpt.notify == Notify.SUCCESS | Notify.FAILURE and rcpt.orcpt == "rfc822;b@example.com"
    assert parse_rcpt("TO:<b@example.com> NOTIFY=NEVER", smtputf8=False).notify is Notify.NEVER
    assert parse_rcpt("TO:<Postmaster>", smtputf8=False).address == "postmaster"
    assert parse_rcpt('TO:<"odd >name"@example.com>', smtputf8=False).address == '"odd >name"@example.com'
    for bad in ("TO:<>", "TO:<b@example.com> NOTIFY=NEVER,SUCCESS", "TO:<b@example.com> ORCPT=x"):
        with pytest.raises(CommandRefused):
            parse_rcpt(bad, smtputf8=False)


@given(st.text(max_size=80))
def test_any_command_argument_is_parsed_or_refused_never_crashes(arg: str) -> None:
    for parse in (
        lambda: parse_mail("FROM:" + arg, size_limit=10, utf8_offered=True),
        lambda: parse_rcpt("TO:" + arg, smtputf8=True),
    ):
        try:
            parsed = parse()
        except CommandRefused as exc:
            assert 500 <= exc.reply.code < 600 and "\r" not in str(exc.reply) and "\n" not in str(exc.reply)
        else:  # what is accepted can travel: no control characters anywhere in it
            for value in vars(parsed).values() if hasattr(parsed, "__dict__") else _fields(parsed):
                assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in str(value))


def _fields(record: object) -> list[object]:
    return [getattr(record, name) for name in record.__slots__]  # type: ignore[attr-defined]


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40))
def test_xtext_round_trip(text: str) -> None:
    encoded = "".join(c if c not in "+=" else f"+{ord(c):02X}" for c in text)
    assert xtext_decode(encoded) == text
    assert xtext_encode(text) == encoded  # what the relay writes is what a listener reads back


@given(
    st.binary(max_size=200)
    | st.lists(st.sampled_from([b"\r", b"\n", b"\0", b".", b"a"]), max_size=60).map(b"".join)
)
def test_normalize_leaves_no_bare_lf_and_no_nul(data: bytes) -> None:
    out = normalize(data)
    assert b"\0" not in out
    assert b"\n" not in out.replace(b"\r\n", b"")
    assert out.replace(b"\r\n", b"\n") == data.replace(b"\0", b"").replace(b"\r\n", b"\n")


def test_received_field() -> None:
    trace = Trace("client.example", "192.0.2.1", "mx.example", True, "TLSv1.3 with cipher X", "alice", False,
                  "bob@example.com")  # fmt: skip
    field = received_field(trace, 0.0).decode()
    assert field.startswith("Received: from client.example ([192.0.2.1])\r\n\tby mx.example (spoolerd)")
    assert "with ESMTPSA\r\n\t(using TLSv1.3 with cipher X)\r\n\t(Authenticated sender: alice)" in field
    assert field.endswith("\tfor <bob@example.com>; Thu, 01 Jan 1970 00:00:00 +0000\r\n")
    plain = received_field(Trace("h", "::1", "me", False), 0.0).decode()
    assert "with SMTP;" in plain and "for <" not in plain
    hostile = received_field(Trace("a(b)\\c", "1.2.3.4", "me", True, user="x)\r\nY: z"), 0.0)
    assert b"\r\nY:" not in hostile and b"(Authenticated sender: x???Y: z)" in hostile


def test_credentials_file(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text(f"# comment\n\nalice:{hash_password('pw one')}\nbob:{hash_password('pw two')}\n")
    creds = load_credentials(path, "listeners.x.credentials_file")
    assert creds.check("alice", b"pw one") and creds.check("bob", b"pw two")
    assert not creds.check("alice", b"pw two") and not creds.check("carol", b"pw one")
    path.write_text("alice:plaintext\n")
    with pytest.raises(ConfigError) as err:
        load_credentials(path, "listeners.x.credentials_file")
    assert "line 1" in str(err.value) and "plaintext" not in str(err.value)


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ({"address": "localhost"}, "host:port"),
        ({"address": "::1:25"}, "brackets"),
        ({"address": "127.0.0.1:25", "tls": "starttls"}, "cert_file"),
        ({"address": "127.0.0.1:25", "auth": "required"}, "credentials_file"),
        ({"address": "0.0.0.0:25", "auth": "required", "credentials_file": "/x"}, "needs tls"),
        # AUTH offered at all (auth = "none" still offers it): never in clear off the machine
        ({"address": "192.0.2.1:587", "credentials_file": "/x"}, "needs tls"),
    ],
)
def test_listener_section_problems(keys: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ListenerSection.model_validate(keys)


def test_listener_section_defaults() -> None:
    section = ListenerSection.model_validate({"address": "[::1]:2525"})
    assert section.loopback_only and section.tls == "none" and section.auth == "none"
    assert [str(n) for n in section.allowed_networks] == ["127.0.0.0/8", "::1/128"]
    assert not ListenerSection.model_validate({"address": "0.0.0.0:25"}).loopback_only


@given(st.text(max_size=300))
def test_a_trace_value_is_printable_without_parentheses(text: str) -> None:
    """The Received field's values (HELO name, user, TLS): the common printable ones as they are, every
    other character that could break the field made '?', cut at 200."""
    from spoolerd.listener.content import _safe

    expected = "".join(c if c.isprintable() and c not in "()\\" else "?" for c in text)[:200]
    assert _safe(text) == expected

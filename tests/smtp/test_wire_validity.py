"""What reaches a relay is valid SMTP (issue #13 part 5), against aiosmtpd on both event loops: no Bcc in
any spelling, no line over 998 octets (aiosmtpd refuses them like a strict relay), 7-bit content for a
relay without 8BITMIME unless the content is signed, and no more recipients a transaction than the limit,
with a 452 "too many recipients" sending the rest in the next transaction."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Awaitable, Callable

from aiosmtpd.smtp import SMTP, Envelope, Session

from spoolerd.transport import OutcomeKind
from transports.smtp import SmtpTransport

from .conftest import Handler, ServerFactory, message, transport

Start = Callable[[SmtpTransport], Awaitable[SmtpTransport]]
DELIVERED, DEFERRED, FAILED = OutcomeKind.DELIVERED, OutcomeKind.DEFERRED, OutcomeKind.FAILED

LONG = b"x" * 1500
TEXT = "na\u00efve caf\u00e9 "


def body_text(content: bytes) -> str:
    parsed = email.message_from_bytes(content, policy=email.policy.default)
    part = next(p for p in parsed.walk() if p.get_content_type() == "text/plain")
    return str(part.get_content()).replace("\r\n", "\n")


async def test_every_bcc_spelling_is_removed_and_its_recipient_kept(
    smtp_server: ServerFactory, started: Start
) -> None:
    server = smtp_server()
    t = await started(transport(server.port))
    content = (
        b"From: me@example.org\r\nTo: you@example.net\r\nBcc : hidden@example.net\r\n"
        b"Resent-Bcc: resent@example.net\r\nSubject: s\r\n\r\nbody\r\n"
    )
    msg, rcpts = message("you@example.net", "hidden@example.net", content=content)
    assert [o.kind for o in await t.send(msg, rcpts)] == [DELIVERED] * 2
    (got,) = server.handler.received
    assert b"hidden" not in got.content and b"resent@" not in got.content
    assert got.content == b"From: me@example.org\r\nTo: you@example.net\r\nSubject: s\r\n\r\nbody\r\n"


async def test_a_bcc_behind_a_lone_cr_is_no_field_on_the_wire(
    smtp_server: ServerFactory, started: Start
) -> None:
    """A lone CR ends no header line here (as in Postfix), so on the wire it is a fold (CRLF and a
    blank), not a line end that would start a Bcc field no check saw (found by trying: the field
    reached the relay)."""
    server = smtp_server()
    t = await started(transport(server.port))
    content = (
        b"From: me@example.org\r\nTo: you@example.net\r\nSubject: hi\rBcc: evil@example.net\r\n\r\nbody\r\n"
    )
    msg, rcpts = message("you@example.net", content=content)
    assert [o.kind for o in await t.send(msg, rcpts)] == [DELIVERED]
    (got,) = server.handler.received
    assert got.content == (
        b"From: me@example.org\r\nTo: you@example.net\r\n"
        b"Subject: hi\r\n Bcc: evil@example.net\r\n\r\nbody\r\n"
    )


async def test_a_line_over_998_octets_is_re_encoded(smtp_server: ServerFactory, started: Start) -> None:
    server = smtp_server()
    t = await started(transport(server.port))
    content = b"From: me@example.org\r\nSubject: long\r\n\r\nstart\r\n" + LONG + b"\r\nend\r\n"
    msg, rcpts = message("you@example.net", content=content)
    (o,) = await t.send(msg, rcpts)
    assert o.kind is DELIVERED, o
    (got,) = server.handler.received
    assert max(len(line) for line in got.content.split(b"\r\n")) <= 998
    assert b"Content-Transfer-Encoding: quoted-printable" in got.content
    assert body_text(got.content) == "start\n" + LONG.decode() + "\nend\n"


async def test_8bit_to_a_relay_without_8bitmime_is_converted(
    smtp_server: ServerFactory, started: Start
) -> None:
    lacking = smtp_server(Handler(drop_extensions=("8BITMIME",)))
    t = await started(transport(lacking.port))
    content = (
        b"From: me@example.org\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\nSubject: plain\r\n\r\n" + TEXT.encode() + b"\r\n"
    )
    msg, rcpts = message("a@example.net", content=content)
    (o,) = await t.send(msg, rcpts)
    assert o.kind is DELIVERED, o
    (got,) = lacking.handler.received
    assert got.content.isascii() and "BODY=8BITMIME" not in got.mail_options
    assert body_text(got.content) == TEXT + "\n"


async def test_signed_8bit_content_is_never_changed(smtp_server: ServerFactory, started: Start) -> None:
    lacking = smtp_server(Handler(drop_extensions=("8BITMIME",)))
    t = await started(transport(lacking.port))
    content = (
        b'MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol="application/pgp-signature";'
        b" boundary=B\r\n\r\n--B\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + TEXT.encode() + b"\r\n--B\r\n"
        b"Content-Type: application/pgp-signature\r\n\r\nsig\r\n--B--\r\n"
    )
    msg, rcpts = message("a@example.net", content=content)
    (o,) = await t.send(msg, rcpts)
    assert (o.kind, o.status) == (FAILED, "5.6.3") and lacking.handler.received == []


async def test_recipients_are_split_at_the_per_transaction_limit(
    smtp_server: ServerFactory, started: Start
) -> None:
    server = smtp_server()
    t = await started(transport(server.port))  # the default: 50, as Postfix
    addresses = [f"user{n}@example.net" for n in range(120)]
    msg, rcpts = message(*addresses)
    assert [o.kind for o in await t.send(msg, rcpts)] == [DELIVERED] * 120
    assert [len(r.recipients) for r in server.handler.received] == [50, 50, 20]
    assert [a for r in server.handler.received for a in r.recipients] == addresses


class Limited(Handler):
    """Answers 452 4.5.3 to every RCPT past the third of a transaction, like a relay with a limit."""

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= 3:
            return "452 4.5.3 Error: too many recipients"
        return await super().handle_RCPT(server, session, envelope, address, options)


async def test_a_452_too_many_recipients_sends_the_rest_in_the_next_transaction(
    smtp_server: ServerFactory, started: Start
) -> None:
    server = smtp_server(Limited())
    t = await started(transport(server.port))
    addresses = [f"user{n}@example.net" for n in range(8)]
    msg, rcpts = message(*addresses)
    assert [o.kind for o in await t.send(msg, rcpts)] == [DELIVERED] * 8
    assert [len(r.recipients) for r in server.handler.received] == [3, 3, 2]
    assert sorted(a for r in server.handler.received for a in r.recipients) == sorted(addresses)


async def test_a_452_to_every_recipient_defers_them(smtp_server: ServerFactory, started: Start) -> None:
    class Full(Handler):
        async def handle_RCPT(
            self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
        ) -> str:
            return "452 4.2.2 mailbox full"

    server = smtp_server(Full())
    t = await started(transport(server.port))
    msg, rcpts = message("a@example.net", "b@example.net")
    assert [(o.kind, o.code) for o in await t.send(msg, rcpts)] == [(DEFERRED, 452)] * 2

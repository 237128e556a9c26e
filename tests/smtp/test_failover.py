"""Failover between relays (``hosts``) against real servers: a stopped relay (nothing listening), one
answering 421, aiosmtpd relays that take mail or defer some recipients; which relay is tried, what each
recipient ends with, the relays' log lines and status rows. Real Postfix relays: test_failover_postfix."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from pydantic import ValidationError
from structlog.testing import capture_logs

from spoolerd.testing import FakeClock
from spoolerd.transport import OutcomeKind, TransportContext
from tests.peers.ports import free_port
from transports.smtp import SmtpSettings, SmtpTransport

from .conftest import PASSWORD, USER, Certs, Handler, Scripted, ServerFactory, message

Start = Callable[[SmtpTransport], Awaitable[SmtpTransport]]
DELIVERED, DEFERRED, FAILED = OutcomeKind.DELIVERED, OutcomeKind.DEFERRED, OutcomeKind.FAILED


@dataclass
class Refusing(Handler):
    """Answers RCPT for the addresses in ``replies`` with that reply, and MAIL with ``mail`` if set."""

    replies: dict[str, str] = field(default_factory=dict)
    mail: str | None = None

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.mail is not None:
            return self.mail
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.replies:
            return self.replies[address]
        return await super().handle_RCPT(server, session, envelope, address, options)


def relays(
    ports: list[int], clock: FakeClock | None = None, hold: float = 60.0, **settings: Any
) -> SmtpTransport:
    settings.setdefault("tls", "none")
    settings.setdefault("helo", "client.test")
    context = TransportContext(name="relay", clock=clock or FakeClock(), destination_hold=hold)
    hosts = [f"127.0.0.1:{port}" for port in ports]
    return SmtpTransport(SmtpSettings.model_validate({"hosts": hosts, **settings}), context)


def states(t: SmtpTransport) -> list[tuple[str, str]]:
    return [(row["relay"], row["state"]) for row in t.status()["relays"]]


def changes(lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(line["event"], line["relay"]) for line in lines if line["event"] in ("relay down", "relay up")]


async def test_a_stopped_relay_and_one_answering_421_are_passed_over(
    smtp_server: ServerFactory, started: Start
) -> None:
    stopped = free_port()
    closing = smtp_server(Refusing(mail="421 4.3.2 closing for maintenance"))
    good = smtp_server()
    t = await started(relays([stopped, closing.port, good.port]))
    msg, rcpts = message("you@example.net", "other@example.net")
    with capture_logs() as lines:
        outcomes = await t.send(msg, rcpts)
    assert [(o.kind, o.relay) for o in outcomes] == [(DELIVERED, f"127.0.0.1:{good.port}")] * 2
    assert good.handler.received[0].recipients == ["you@example.net", "other@example.net"]
    down = [f"127.0.0.1:{stopped}", f"127.0.0.1:{closing.port}"]
    assert changes(lines) == [("relay down", peer) for peer in down]
    assert (
        "closing for maintenance"
        in next(x for x in lines if x["event"] == "relay down" and x["relay"] == down[1])["reason"]
    )
    assert states(t) == [(down[0], "down"), (down[1], "down"), (f"127.0.0.1:{good.port}", "up")]
    rows = t.status()["relays"]
    assert rows[0]["retry_in"] == 60.0 and "cannot connect" in rows[0]["last_error"]

    sessions = closing.handler.sessions
    with capture_logs() as lines:
        assert [o.kind for o in await t.send(*message("third@example.net"))] == [DELIVERED]
    assert closing.handler.sessions == sessions  # held: not tried while another relay takes mail
    assert changes(lines) == []  # still down: no second line


def refuse_login(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    return AuthResult(success=False, handled=False)


async def test_relays_refusing_tls_or_the_login_are_passed_over(
    smtp_server: ServerFactory, started: Start, certs: Certs, tmp_path: Path
) -> None:
    no_tls = smtp_server()  # offers no STARTTLS, which tls = "starttls" requires
    refusing = smtp_server(tls_context=certs.server, authenticator=refuse_login)
    good = smtp_server(tls_context=certs.server)
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    password.chmod(stat.S_IRUSR)
    options = {
        "tls": "starttls",
        "ca_file": str(certs.ca_file),
        "username": USER,
        "password_file": str(password),
    }
    t = await started(relays([no_tls.port, refusing.port, good.port], **options))
    with capture_logs() as lines:
        (o,) = await t.send(*message("you@example.net"))
    assert (o.kind, o.relay) == (DELIVERED, f"127.0.0.1:{good.port}")
    assert [(x["event"], x["relay"], x["dsn"]) for x in lines if x["event"].startswith("relay ")] == [
        ("relay TLS failed", f"127.0.0.1:{no_tls.port}", "4.7.4"),
        ("relay login refused", f"127.0.0.1:{refusing.port}", "4.7.8"),
    ]
    assert PASSWORD not in repr(lines) and PASSWORD not in repr(t.status())
    assert [state for _, state in states(t)] == ["down", "down", "up"]


async def test_recipients_deferred_by_one_relay_are_tried_at_the_next(
    smtp_server: ServerFactory, started: Start
) -> None:
    first = smtp_server(
        Refusing(
            replies={"busy@example.net": "451 4.3.0 try later", "gone@example.net": "550 5.1.1 no such user"}
        )
    )
    second = smtp_server()
    t = await started(relays([first.port, second.port]))
    msg, rcpts = message("ok@example.net", "busy@example.net", "gone@example.net")
    ok, busy, gone = await t.send(msg, rcpts)
    assert (ok.kind, ok.relay) == (DELIVERED, f"127.0.0.1:{first.port}")
    assert (busy.kind, busy.relay) == (DELIVERED, f"127.0.0.1:{second.port}")
    assert (gone.kind, gone.code) == (FAILED, 550)  # a permanent refusal is final: not asked elsewhere
    assert second.handler.received[0].recipients == ["busy@example.net"]
    assert states(t) == [(f"127.0.0.1:{first.port}", "up"), (f"127.0.0.1:{second.port}", "up")]


async def test_a_deferral_everywhere_keeps_the_last_reply(smtp_server: ServerFactory, started: Start) -> None:
    first = smtp_server(Refusing(replies={"busy@example.net": "452 4.2.2 mailbox full"}))
    stopped = free_port()
    t = await started(relays([first.port, stopped]))
    (busy,) = await t.send(*message("busy@example.net"))
    assert (busy.kind, busy.code, busy.relay) == (DEFERRED, 452, f"127.0.0.1:{first.port}")


async def test_every_relay_down_then_one_back(
    smtp_server: ServerFactory, scripted_server: Callable[..., Awaitable[Scripted]], started: Start
) -> None:
    async def refuse(line: bytes, writer: asyncio.StreamWriter) -> bool:
        return False

    greeting_421 = await scripted_server(refuse)
    stopped = free_port()
    clock = FakeClock()
    t = await started(relays([stopped, greeting_421.port], clock, hold=60.0))
    with capture_logs() as lines:
        (o,) = await t.send(*message("you@example.net"))
    assert (o.kind, o.code, o.relay) == (DEFERRED, None, None)  # the spooler holds the list, not one
    assert f"127.0.0.1:{stopped}: cannot connect" in o.diagnostic
    assert f"127.0.0.1:{greeting_421.port}" in o.diagnostic
    assert len(changes(lines)) == 2 and t.destination(message("x@y")[1][0]) == t.peer

    clock.advance(30)  # every relay held: all are tried all the same (a forced flush, the spooler's retry)
    (o,) = await t.send(*message("you@example.net"))
    assert o.kind is DEFERRED and greeting_421.connections == 2

    clock.advance(61)
    server = smtp_server(port=stopped)  # the first relay is back
    with capture_logs() as lines:
        (o,) = await t.send(*message("you@example.net"))
    assert (o.kind, o.relay) == (DELIVERED, f"127.0.0.1:{stopped}")
    assert changes(lines) == [("relay up", f"127.0.0.1:{stopped}")]
    assert next(x for x in lines if x["event"] == "relay up")["down_for"] == 91.0
    assert server.handler.received
    assert greeting_421.connections == 2  # the first relay took it: the second was not asked


async def test_one_relay_is_reported_by_the_spooler_not_twice(started: Start) -> None:
    context = TransportContext(name="relay")
    settings = SmtpSettings.model_validate({"host": "127.0.0.1", "port": free_port(), "tls": "none"})
    t = await started(SmtpTransport(settings, context))
    with capture_logs() as lines:
        (o,) = await t.send(*message("you@example.net"))
    assert (o.kind, o.code, o.relay) == (DEFERRED, None, t.peer)  # as before failover existed
    assert changes(lines) == []  # the spooler's destination cache writes the line
    assert states(t) == [(t.peer, "down")]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({}, "Field required"),
        ({"host": "a.test", "hosts": ["b.test"]}, "not both"),
        ({"hosts": []}, "at least one relay"),
        ({"hosts": ["a.test", "a.test:25"], "tls": "none"}, "named twice"),
        ({"hosts": ["a.test:0"]}, "between 1 and 65535"),
        ({"hosts": ["[::1"]}, "[address]:port"),
    ],
)
def test_hosts_settings_are_checked(options: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error.replace("[", r"\[")):
        SmtpSettings.model_validate(options)


def test_hosts_take_their_own_port_or_the_default() -> None:
    settings = SmtpSettings.model_validate(
        {"hosts": ["a.test", "b.test:2525", "[::1]:26", "::1"], "port": 587}
    )
    assert [r.peer for r in settings.relays] == ["a.test:587", "b.test:2525", "[::1]:26", "[::1]:587"]

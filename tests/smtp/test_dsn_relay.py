"""RFC 3461 parameters passed on by the SMTP transport, as Postfix passes them: RET= and ENVID= on MAIL
FROM, NOTIFY= and ORCPT= on each RCPT TO, only to a relay that offers DSN. An aiosmtpd relay (taught
DSN here: it records each command's raw argument) sees them exactly; one that does not offer DSN never
does. (A real Postfix takes them: tests/smtp/test_postfix.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from spoolerd.dsn_params import Notify, Ret
from spoolerd.transport import OutcomeKind
from tests.peers.ports import free_port

from .conftest import Handler, message, transport
from .test_transport import Start

DSN_WORDS = (b"RET=", b"ENVID=", b"NOTIFY=", b"ORCPT=")


class RecordingSMTP(SMTP):
    """aiosmtpd, recording each MAIL and RCPT argument as it came and taking the DSN parameters off
    before aiosmtpd (which knows none of them) reads the rest."""

    commands: list[str]

    async def smtp_MAIL(self, arg: str) -> None:
        self.commands.append(f"MAIL {arg}")
        await super().smtp_MAIL(_without_dsn(arg))

    async def smtp_RCPT(self, arg: str) -> None:
        self.commands.append(f"RCPT {arg}")
        await super().smtp_RCPT(_without_dsn(arg))


def _without_dsn(arg: str) -> str:
    return " ".join(w for w in arg.split(" ") if not w.upper().encode().startswith(DSN_WORDS))


class DsnHandler(Handler):
    def __init__(self, offer: bool, pipelining: bool) -> None:
        super().__init__(drop_extensions=() if pipelining else ("PIPELINING",))
        self.offer = offer

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        lines = await super().handle_EHLO(server, session, envelope, hostname, responses)
        return [*lines[:-1], "250-DSN", lines[-1]] if self.offer else lines


@pytest.fixture
def relay_server() -> Iterator[Any]:
    started: list[Controller] = []

    def start(offer: bool, pipelining: bool = True) -> tuple[int, list[str]]:
        commands: list[str] = []

        class Recorded(Controller):
            def factory(self) -> SMTP:
                server = RecordingSMTP(self.handler, **self.SMTP_kwargs)
                server.commands = commands
                return server

        port = free_port()
        controller = Recorded(
            DsnHandler(offer, pipelining),
            hostname="127.0.0.1",
            port=port,
            decode_data=False,
            enable_SMTPUTF8=False,
        )
        controller.start()
        started.append(controller)
        return port, commands

    yield start
    for controller in started:
        controller.stop()


def _with_dsn() -> tuple[Any, list[Any]]:
    msg, rcpts = message("you@example.net", "other@example.net", "plain@example.net")
    rcpts = [
        replace(rcpts[0], notify=Notify.SUCCESS | Notify.FAILURE, orcpt="rfc822;Old+Name=1@example.net"),
        replace(rcpts[1], notify=Notify.NEVER),
        rcpts[2],
    ]
    return replace(msg, recipients=tuple(rcpts), dsn_ret=Ret.HDRS, dsn_envid="Q Q+1=x"), rcpts


@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_relay_offering_dsn_sees_the_parameters(
    relay_server: Any, started: Start, pipelining: bool
) -> None:
    port, commands = relay_server(offer=True, pipelining=pipelining)
    t = await started(transport(port))
    msg, rcpts = _with_dsn()
    assert [o.kind for o in await t.send(msg, rcpts)] == [OutcomeKind.DELIVERED] * 3
    mail, *rcpt_commands = commands
    assert mail.startswith("MAIL FROM:<me@example.org> ") and mail.endswith(" RET=HDRS ENVID=Q+20Q+2B1+3Dx")
    assert rcpt_commands == [
        "RCPT TO:<you@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Old+2BName+3D1@example.net",
        "RCPT TO:<other@example.net> NOTIFY=NEVER",
        "RCPT TO:<plain@example.net>",
    ]


async def test_a_relay_without_dsn_never_sees_them(relay_server: Any, started: Start) -> None:
    port, commands = relay_server(offer=False)
    t = await started(transport(port))
    msg, rcpts = _with_dsn()
    assert [o.kind for o in await t.send(msg, rcpts)] == [OutcomeKind.DELIVERED] * 3
    assert len(commands) == 4 and not any(w.decode() in c for c in commands for w in DSN_WORDS), commands

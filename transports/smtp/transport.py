"""The SMTP transport (entry point ``smtp``): relays every ``SMTP`` recipient through a smarthost, or
through the first of several (``hosts``) that takes it.

Each relay (``relay.Relay``) has its own pooled connections. A relay that cannot be reached, refuses TLS
or the login, or answers 421 is marked down for ``destination_hold`` (``relays.Relays``) and the next
one is tried in the same attempt; recipients one relay deferred (4xx, or no reply) are tried at the next
before they are deferred, with the last reply any relay gave about them (or, when every relay tried
was down, each relay's reason).
A relay with a rate (``relay_rates``) whose budget is spent is passed over like a relay that is down;
when every relay to try was passed over so, the recipients are deferred without an attempt until the
earliest budget frees. The budgets are the spooler's (a ``RateGate``, kept in its store).
Each relay going down or up again is one log line naming it, and is reported to the spooler (``watch``):
its relay row changes, one status_changed event.
With one relay, its failures are the spooler's to report (the transport's destination is that relay).
Bcc header fields are removed from the content before it leaves.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import anyio
import structlog
from pydantic import BaseModel

from spoolerd import maillog
from spoolerd.abilities import RateGate
from spoolerd.dsn_params import RecipientDsn
from spoolerd.envelope import without_bcc
from spoolerd.message import ContentLines, Message, Recipient
from spoolerd.transport import Outcome, OutcomeKind, PartChange, TransportContext
from transports.common.check import checked_tls
from transports.common.credentials import Credentials

from .channel import Connection
from .downgrade import Unchangeable, conform
from .plan import EnvelopeDsn
from .pool import ConnectionPool
from .relay import Relay
from .relays import Attempt, Delivery, Relays
from .replies import bad_address
from .session import open_session
from .settings import HELO_NAME, RelayAddress, SmtpSettings, TlsMode
from .wire import Payload, crlf

__all__ = ["SmtpTransport"]

log = structlog.get_logger("spoolerd.transports.smtp")


def _local_name() -> str:
    name = socket.getfqdn()
    return name if HELO_NAME.match(name) else "localhost"


class SmtpTransport:
    Settings: ClassVar[type[BaseModel]] = SmtpSettings

    def __init__(self, settings: SmtpSettings, context: TransportContext) -> None:
        self.name = context.name
        self.address_types: frozenset[str] | None = frozenset({"SMTP"})
        self.settings = settings
        self.destination_concurrency = settings.destination_concurrency
        self._credentials = Credentials(settings)
        self._context: ssl.SSLContext | None = None
        self._helo = settings.helo or "localhost"
        self._clock = context.clock
        self.relays = [Relay(address, settings, self.name, self._open) for address in settings.relays]
        self._by_peer = {relay.peer: relay for relay in self.relays}
        self._state = Relays([relay.peer for relay in self.relays], context.destination_hold)
        self.peer = ",".join(self._by_peer)  # the destination: the relay, or the list of them
        self._gate: RateGate | None = None  # the spooler's, for relay_rates
        self._changed: Callable[[PartChange], None] = lambda change: None  # ``watch``: the spooler's

    def use_rate_gate(self, gate: RateGate) -> None:
        self._gate = gate

    @property
    def pool(self) -> ConnectionPool:
        """The first relay's connections (the only relay's, in the one-relay form)."""
        return self.relays[0].pool

    def check(self) -> None:
        """Secrets resolve and TLS files load (``spoolerd check-config``, ``run`` and a reload call it)."""
        tls = None if self.settings.tls is TlsMode.NONE else self.settings
        self._context = checked_tls(self._credentials, tls)

    async def start(self) -> None:
        self.check()
        if self.settings.helo is None:
            self._helo = await anyio.to_thread.run_sync(_local_name)

    async def stop(self) -> None:
        """Closes every relay's pooled connections; returns once they are closed."""
        await asyncio.gather(*(relay.pool.close() for relay in self.relays))

    def destination(self, recipient: Recipient) -> str:
        return self.peer

    def status(self) -> dict[str, Any]:
        """Its part of the status row: each relay, up or down (since when, held how much longer, why)."""
        return {"relays": self._state.rows(self._clock())}

    def watch(self, changed: Callable[[PartChange], None]) -> None:
        """Where to report each relay (of several) going down or up again: its own status row."""
        self._changed = changed

    async def _open(self, relay: RelayAddress) -> Connection:
        conn = await open_session(self.settings, self._credentials, self._context, self._helo, relay)
        log.debug(
            "connection opened",
            transport=self.name,
            relay=relay.peer,
            tls=self.settings.tls.value,
            authenticated=self._credentials.username is not None,
            extensions=sorted(conn.extensions),
        )
        return conn

    async def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        sender = message.sender
        if bad_address(sender):
            return [
                Outcome.failed("the envelope sender has characters SMTP cannot carry", None, "5.1.7")
            ] * len(recipients)
        outcomes: list[Outcome] = []
        todo: list[int] = []
        for i, r in enumerate(recipients):
            if not r.address or bad_address(r.address):
                outcomes.append(Outcome.failed("the address has characters SMTP cannot carry", None, "5.1.3"))
            else:
                outcomes.append(Outcome.not_me())  # replaced below
                todo.append(i)
        if todo:
            addresses = [recipients[i].address for i in todo]
            try:  # lines over 998 octets re-encoded, whatever the relay: a strict one refuses them
                payload = _payload(message)
            except Unchangeable as exc:
                results = [Outcome.failed(str(exc), None, exc.status)] * len(todo)
            else:
                dsn = EnvelopeDsn(
                    message.dsn_ret,
                    message.dsn_envid,
                    tuple(RecipientDsn(recipients[i].notify, recipients[i].orcpt) for i in todo),
                )
                results = await self._failover(sender, addresses, payload, dsn)
            for i, outcome in zip(todo, results, strict=True):
                outcomes[i] = outcome
        return outcomes

    async def _failover(
        self, sender: str, rcpts: list[str], payload: Payload, dsn: EnvelopeDsn
    ) -> list[Outcome]:
        """Each recipient through the relays in turn until one takes it or refuses it for good."""
        attempt = Attempt(len(rcpts), several=len(self.relays) > 1)
        frees: list[float] = []  # when each relay passed over for its rate has budget again
        tried = False
        for peer in self._state.order(self._clock()):
            if not attempt.waiting:
                break
            rate = self.settings.relay_rates.get(peer)
            if rate is not None and self._gate is not None:
                at = await self._gate.admit(peer, rate)
                if at is not None:
                    frees.append(at)
                    continue
            tried = True
            relay = self._by_peer[peer]
            waiting = attempt.waiting
            delivery = await relay.deliver(sender, [rcpts[i] for i in waiting], payload, dsn.subset(waiting))
            self._note(relay, delivery)
            attempt.tried(delivery)
        if not tried and frees:
            return [self._rate_spent(min(frees))] * len(rcpts)
        return attempt.outcomes()

    def _rate_spent(self, frees: float) -> Outcome:
        """Every relay's budget is spent: no attempt, back when the first one frees."""
        rates = ", ".join(f"{p} {r}" for p, r in self.settings.relay_rates.items())
        diagnostic = f"relay rate limits spent ({rates}): waits its turn"
        after = max(0.0, frees - self._clock())
        return Outcome(OutcomeKind.DEFERRED, None, "4.7.0", diagnostic, after, attempted=False)

    def _note(self, relay: Relay, delivery: Delivery) -> None:
        """Mark ``relay`` down or up after it was tried; with several relays, a change is a log line."""
        now = self._clock()
        several = len(self.relays) > 1
        if delivery.down is not None:
            down = delivery.down
            reason = maillog.reply_text(down.diagnostic, relay.peer)
            if self._state.failed(relay.peer, now, reason) and several:
                maillog.relay_down(transport=self.name, relay=relay.peer, dsn=down.status, reason=reason)
                self._changed(PartChange(relay.peer, reason))
        elif delivery.answered:
            since = self._state.answered(relay.peer)
            if since is not None and several:
                maillog.relay_up(transport=self.name, relay=relay.peer, down_for=now - since)
                self._changed(PartChange(relay.peer))


# no dot begins a line, in lines that go out as the store has them
_DOT_FREE = ContentLines.NO_DOT | ContentLines.CRLF | ContentLines.SHORT


def _payload(message: Message) -> Payload:
    """The content as it goes out: without Bcc fields, CRLF, no line over 998 octets. What the store
    knows of its lines is not looked for again (dropping whole header fields changes none of it). That
    no line begins with a dot holds on the wire only for lines sent as stored: ``crlf`` may make a lone
    CR a line's end, and ``conform``'s re-encoding may begin a line with a dot."""
    wire = message.content if ContentLines.CRLF in message.lines else crlf(message.content)
    wire = without_bcc(wire)  # judged as it goes out (a header's lone CR is folded: crlf)
    if ContentLines.SHORT not in message.lines:
        wire = conform(wire, eight_bit=True)
    return Payload(wire, dot_free=message.lines & _DOT_FREE == _DOT_FREE)

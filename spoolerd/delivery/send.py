"""Routing and sending: each pending recipient to a transport, under the limits and the send timeout.

Recipients are routed by address type to the first online transport that serves them, in transport
order; a transport's NOT_ME hands the recipient to the next one. A recipient that only an offline
transport serves waits for it (4.3.2, without a try); one that no transport takes fails (5.4.4). Each
transport is sent its recipients a destination at a time, within the destination's limit and then the
transport's, unless the destination is known dead (``limits``) or has used its rate (``rates``). A
transport that raises, breaks its contract or does not answer within ``send_timeout`` defers its
recipients: sending never raises for a delivery problem, it answers one outcome per recipient.

A wait told without a try (a rate's turn, a dead destination's hold, a relay's budget) is a time from
when it was told, and ``decide`` counts it from the attempt's start: each is lengthened by the time the
attempt took until then (``_counted_from_start``), or the message would be due back that much before
its turn (the attempt's lock, preprocessing and wait for a slot: milliseconds) and deferred once more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace

import anyio
import structlog

from ..message import Message, Recipient
from ..routing import first_chance, route
from ..slot import TransportSlot
from ..transport import Outcome, OutcomeKind, Transport, Tried
from .limits import DestinationLimits
from .rates import RateBudgets
from .settings import DeliverySettings

__all__ = ["Sender", "call_transport"]

log = structlog.get_logger("spoolerd.delivery")


@dataclass(frozen=True, slots=True)
class _Batch:
    """What one transport answered for the recipients routed to it."""

    transport: str
    recipients: list[Recipient]
    outcomes: list[Outcome]


class Sender:
    """Sends attempts' recipients; shared by all messages so the destination limits are global."""

    def __init__(self, limits: DestinationLimits, settings: DeliverySettings, rates: RateBudgets) -> None:
        self.limits = limits
        self.settings = settings  # replaced by a reload
        self.rates = rates

    async def route_and_send(
        self,
        transports: Sequence[TransportSlot],
        message: Message,
        pending: Sequence[Recipient],
        *,
        force: bool,
        started: float,
        first: str | None = None,
        held: dict[int, str] | None = None,
    ) -> dict[int, Tried]:
        """What each of ``pending`` got; ``transports``: this attempt's, even if a reload replaces them
        (of those [sender_routes] binds, this sender's only). ``started``: when the attempt began (what
        a wait without a try counts from). ``first``: a coupled store's transport,
        which has the first chance at the recipients it serves (``routing.first_chance``). ``held`` is
        told, by recipient index, the destination each recipient deferred behind a dead destination
        waits for."""
        held = {} if held is None else held

        async def send_into(batches: list[_Batch], slot: TransportSlot, recipients: list[Recipient]) -> None:
            outcomes = await self._send(slot, message, recipients, force=force, held=held)
            outcomes = _counted_from_start(outcomes, self.limits.clock() - started)
            batches.append(_Batch(slot.name, recipients, outcomes))

        outcomes: dict[int, Tried] = {}
        refused: dict[int, set[str]] = {}
        remaining = list(pending)
        named = [(s.name, s) for s in transports]
        slots = dict(first_chance(self.settings.sender_routes.eligible(message.sender, named), first))
        usable = [(s.name, s.transport.address_types) for s in slots.values() if s.online]
        offline = [(s.name, s.transport.address_types) for s in slots.values() if not s.online]
        while remaining:
            plan = route(remaining, usable, refused)
            for r in plan.unroutable:
                waiting = route([r], offline, refused).by_transport
                if waiting:
                    name = next(iter(waiting))
                    offline_outcome = Outcome(
                        OutcomeKind.DEFERRED, None, "4.3.2", f"transport {name} is offline", attempted=False
                    )
                    outcomes[r.index] = Tried(name, offline_outcome)
                else:
                    outcomes[r.index] = Tried(None, _no_transport(r, refused.get(r.index)))
            remaining = []
            batches: list[_Batch] = []
            if len(plan.by_transport) == 1:  # the common case: no task group needed
                ((name, recipients),) = plan.by_transport.items()
                await send_into(batches, slots[name], recipients)
            else:
                async with anyio.create_task_group() as tg:
                    for name, recipients in plan.by_transport.items():
                        tg.start_soon(send_into, batches, slots[name], recipients)
            for batch in batches:
                for r, outcome in zip(batch.recipients, batch.outcomes, strict=True):
                    if outcome.kind is OutcomeKind.NOT_ME:
                        refused.setdefault(r.index, set()).add(batch.transport)
                        remaining.append(r)
                    else:
                        outcomes[r.index] = Tried(batch.transport, outcome)
        return outcomes

    async def _send(
        self,
        slot: TransportSlot,
        message: Message,
        recipients: list[Recipient],
        *,
        force: bool,
        held: dict[int, str],
    ) -> list[Outcome]:
        """Send to one transport, a destination at a time; never raises, answers one outcome each."""
        transport = slot.transport
        by_destination: dict[str, list[int]] = {}
        for i, r in enumerate(recipients):
            try:
                destination = transport.destination(r)
            except Exception:
                log.exception("transport could not name a destination", transport=transport.name)
                destination = "-"
            by_destination.setdefault(destination, []).append(i)
        results: list[Outcome] = [Outcome.not_me()] * len(recipients)

        async def one(destination: str, positions: list[int]) -> None:
            key = f"{slot.name}:{destination}"
            limits = self.limits
            own = slot.destination_concurrency
            with limits.use(key, own or self.settings.destination_concurrency) as limit:
                answers = limits.dead(key, len(positions), force)
                tried = waits = False
                behind = answers is not None  # deferred behind the dead destination, not sent
                if answers is None:
                    # the destination's own limit first: waiting for it must not hold a transport slot
                    async with limit, slot.limiter:
                        answers = limits.dead(key, len(positions), force)  # it may have died meanwhile
                        behind = answers is not None
                        if answers is None:  # the rate last: a send it admits is recorded as sent
                            answers = await self.rates.admit(
                                slot, destination, key, message.id, len(positions)
                            )
                            waits = answers is not None
                        if answers is None:
                            tried = True
                            limits.changes.begin(slot.resource)  # its row active while it sends
                            try:
                                answers = await call_transport(
                                    transport,
                                    message,
                                    [recipients[i] for i in positions],
                                    self.settings.send_timeout,
                                )
                            finally:
                                limits.changes.end(slot.resource)
                            slot.account(answers)
                if not waits:  # a deferral for the rate says nothing of the destination
                    limits.observe(slot, destination, key, answers)
                if tried:
                    await self.rates.observe(slot, destination, key, answers)
            if behind:  # not a transport's own deferral without a try (a relay's rate, say)
                held.update((recipients[i].index, key) for i in positions)
            for i, outcome in zip(positions, answers, strict=True):
                results[i] = outcome

        if len(by_destination) == 1:
            ((destination, positions),) = by_destination.items()
            await one(destination, positions)
        else:
            async with anyio.create_task_group() as tg:
                for destination, positions in by_destination.items():
                    tg.start_soon(one, destination, positions)
        return results


async def call_transport(
    transport: Transport, message: Message, recipients: list[Recipient], send_timeout: float
) -> list[Outcome]:
    """``transport.send`` within ``send_timeout``; a timeout, a crash or a broken contract defers everyone."""
    try:
        async with asyncio.timeout(send_timeout):
            answers = await transport.send(message, recipients)
    except TimeoutError:
        diagnostic = f"transport {transport.name} did not answer within {send_timeout:g} s"
        return [Outcome.deferred(diagnostic, status="4.4.2")] * len(recipients)
    except Exception as exc:  # a crashing plugin must not take the spooler down with it
        log.exception("transport raised", transport=transport.name, message=message.id)
        diagnostic = f"transport {transport.name} failed: {type(exc).__name__}: {exc}"
        return [Outcome.deferred(diagnostic, status="4.3.0")] * len(recipients)
    if not isinstance(answers, list) or len(answers) != len(recipients):
        count = len(answers) if isinstance(answers, list) else "no list of"
        diagnostic = f"transport {transport.name} answered {count} outcomes for {len(recipients)} recipients"
        log.error("transport broke its contract", transport=transport.name, problem=diagnostic)
        return [Outcome.deferred(diagnostic, status="4.3.0")] * len(recipients)
    return answers


def _counted_from_start(outcomes: list[Outcome], elapsed: float) -> list[Outcome]:
    """``outcomes`` with each wait told without a try lengthened by ``elapsed``, the time from the
    attempt's start until it was told: due back at its time or just after, never before it."""
    if elapsed <= 0:
        return outcomes
    return [
        replace(o, retry_after=o.retry_after + elapsed)
        if not o.attempted and o.retry_after is not None
        else o
        for o in outcomes
    ]


def _no_transport(r: Recipient, refused: set[str] | None) -> Outcome:
    if refused:
        tried = ", ".join(sorted(refused))
        return Outcome.failed(f"no transport accepted the recipient (declined by {tried})", None, "5.4.4")
    return Outcome.failed(f"no transport serves address type {r.address_type or '(none)'!r}", None, "5.4.4")

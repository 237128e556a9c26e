"""What a queued recipient is waiting for, as ``spoolerctl queue`` tells it: a destination the
dispatcher holds as down (its ``DestinationCache``), a transport taken offline, or its turn under a
transport's rate limit (the ticket its message holds in the destination's budget).

Read only: asking never changes what the dispatcher will do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..delivery import Dispatcher
from ..message import Recipient
from ..routing import serves
from ..slot import TransportSlot

__all__ = ["Waiting", "turn_for", "waiting_for", "waiting_row"]


@dataclass(frozen=True, slots=True)
class Waiting:
    transport: str
    destination: str | None  # None: the whole transport is offline
    until: float | None  # when the destination may be tried again, or the turn; None: until taken online
    rate: str | None = None  # the rate limit whose turn it waits for ("5/10s"); None: not the rate


def _candidates(dispatcher: Dispatcher, rcpt: Recipient) -> list[TransportSlot]:
    """The transport that last took the recipient; if none did, every one that serves its address type,
    in routing order (an earlier one may pass it on with NOT_ME, so any of them may be the one)."""
    last = dispatcher.slot(rcpt.transport) if rcpt.transport else None
    if last is not None:
        return [last]
    return [s for s in dispatcher.transports if serves(s.address_types, rcpt.address_type)]


def waiting_for(dispatcher: Dispatcher, rcpt: Recipient, now: float) -> Waiting | None:
    """Why a recipient without a final outcome is not being tried, if a down destination or an offline
    transport is the reason; ``None`` when it is only waiting for its own next try."""
    if rcpt.state.final:
        return None
    candidates = _candidates(dispatcher, rcpt)
    for slot in candidates:
        try:
            destination = slot.transport.destination(rcpt)
        except Exception:  # a plugin's bug must not break the queue listing
            continue
        until = dispatcher.destinations.dead_until(f"{slot.name}:{destination}", now)
        if until is not None:
            return Waiting(slot.name, destination, until)
    offline = next((s for s in candidates if not s.online), None)
    return None if offline is None else Waiting(offline.name, None, None)


async def turn_for(dispatcher: Dispatcher, message_id: str, rcpt: Recipient) -> Waiting | None:
    """The turn message ``message_id`` waits for under a rated transport that may take ``rcpt``."""
    if rcpt.state.final:
        return None
    for slot in _candidates(dispatcher, rcpt):
        if slot.rate is None:
            continue
        try:
            destination = slot.transport.destination(rcpt)
        except Exception:  # a plugin's bug must not break the queue listing
            continue
        key = f"{slot.name}:{destination}"
        found = await dispatcher.sender.rates.turn(key, slot.rate, message_id)
        if found is not None:
            limit, at = found
            return Waiting(slot.name, destination, at, str(limit))
    return None


async def waiting_row(dispatcher: Dispatcher, message_id: str, rcpt: Recipient) -> dict[str, Any] | None:
    """``waiting_for`` now, else the rate limit's turn (``turn_for``), as the ``queue`` command answers."""
    waiting = waiting_for(dispatcher, rcpt, dispatcher.clock())
    if waiting is None:
        waiting = await turn_for(dispatcher, message_id, rcpt)
    return None if waiting is None else asdict(waiting)

"""What a queued recipient is waiting for, as ``spoolerctl queue`` tells it: a destination the
dispatcher holds as down (its ``DestinationCache``), or a transport taken offline.

Read only: asking never changes what the dispatcher will do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..delivery import Dispatcher
from ..message import Recipient
from ..routing import serves
from ..slot import TransportSlot

__all__ = ["Waiting", "waiting_for", "waiting_row"]


@dataclass(frozen=True, slots=True)
class Waiting:
    transport: str
    destination: str | None  # None: the whole transport is offline
    until: float | None  # when the destination may be tried again; None: until taken online


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


def waiting_row(dispatcher: Dispatcher, rcpt: Recipient) -> dict[str, Any] | None:
    """``waiting_for`` now, as the ``queue`` command answers it."""
    waiting = waiting_for(dispatcher, rcpt, dispatcher.clock())
    return None if waiting is None else asdict(waiting)

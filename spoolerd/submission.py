"""Submitting a message on a client's behalf (IMessage::SubmitMessage as the daemon performs it).

A store with ``coupled_transport`` is the seed document's tightly coupled store (seed 004): when the
message needs no preprocessing, the store hands the recipients its own transport serves to that transport
inside the submit, before the spooler ever sees them (``routing.coupled_share``: not when
``[sender_routes]`` sends this sender's mail elsewhere). All of them delivered: the message is finished
at once (Sent Items / delete) without the spooler. Otherwise what is left (other recipients, deferrals,
failures that need a report) is queued for the spooler, which wakes for it. Each outcome is logged and
raises its delivered / deferred / failed event as the spooler's do. With preprocessing needed (the
default ``headers`` preprocessor), the message is queued for the spooler, which preprocesses it and
submits it again: then the coupled transport has the first chance at its recipients (the Dispatcher's
``coupled``) and the spooler sends the rest in the same attempt.

The message is created and queued already locked, in one transaction (``submit_new(lock=...)``), so the
spooler cannot race the handover and a crash leaves either a queued message or nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import anyio
import structlog

from . import maillog, outbox
from .delivery import AttemptResult, Dispatcher, RecipientResult
from .delivery.decide import recipient_update
from .delivery.send import call_transport
from .errors import NotFound, StoreError
from .message import Draft, RecipientState, RecipientUpdate
from .outgoing import outgoing_draft, submit_outgoing
from .routing import coupled_share
from .spooler import Spooler
from .spooler_results import delivery_events
from .store import MessageStore
from .transport import OutcomeKind, Transport, Tried

__all__ = ["SubmitResult", "Submitter", "outgoing_draft", "submit_outgoing"]

log = structlog.get_logger("spoolerd.submission")


@dataclass(frozen=True, slots=True)
class SubmitResult:
    message_id: str
    queued: bool  # left for the spooler (False: finished inside submit by the coupled transport)
    handled: int = 0  # recipients the coupled transport took
    retry_at: float | None = None  # when the spooler should look at it (None: at once)


class Submitter:
    def __init__(
        self,
        stores: Mapping[str, MessageStore],
        *,
        preprocess: bool,
        dispatcher: Dispatcher,
        spooler: Spooler | None = None,
    ) -> None:
        self.stores = stores
        self.preprocess = preprocess  # any preprocessor or distribution list is configured
        self.dispatcher = dispatcher
        self.spooler = spooler

    async def submit_new(self, store_name: str, draft: Draft) -> SubmitResult:
        """Create ``draft`` in the store's Outbox and queue it, in one transaction (``submit_outgoing``):
        after a crash it is queued or it is not there. With a coupled transport, hand it over next."""
        store = self.stores.get(store_name)
        if store is None:
            raise NotFound(f"no store named {store_name!r}")
        coupled = self.dispatcher.coupled.get(store_name)
        slot = self.dispatcher.slot(coupled) if coupled is not None else None
        if slot is None or self.preprocess:
            message_id = await submit_outgoing(store, draft, preprocess=self.preprocess)
            return SubmitResult(message_id, queued=True)
        # a sub-owner of the daemon's: the daemon's next life takes it back at once if this one dies
        owner = f"{self.dispatcher.owner}#coupled:{store_name}:{secrets.token_hex(4)}"
        message_id = await submit_outgoing(store, draft, lock=(owner, self.dispatcher.settings.lease))
        result = SubmitResult(message_id, queued=True)  # if the hand-over is cut short, the spooler has it
        try:
            async with self.dispatcher.leases.leased(store, message_id, owner):
                result = await self._hand_over(store, slot.transport, message_id, owner)
        finally:
            if result.queued:
                with anyio.CancelScope(shield=True):
                    try:
                        await store.unlock(message_id, owner, retry_at=result.retry_at)
                    except StoreError:
                        log.warning("unlock after a coupled hand-over failed", message=message_id)
                if self.spooler is not None:
                    self.spooler.wake()
        return result

    async def _hand_over(
        self, store: MessageStore, transport: Transport, message_id: str, owner: str
    ) -> SubmitResult:
        message = await store.lock(message_id, owner, self.dispatcher.settings.lease)  # a fresh snapshot
        routes = self.dispatcher.settings.sender_routes
        mine = coupled_share(
            message.sender, message.recipients, (transport.name, transport.address_types), routes
        )
        if not mine:
            return SubmitResult(message_id, queued=True)
        # the same timeout and crash handling as the spooler's own sends
        settings = self.dispatcher.settings
        outcomes = await call_transport(transport, message, mine, settings.send_timeout)
        now = self.dispatcher.clock()
        submitted = message.client_submit_time or now
        updates = [
            recipient_update(r, transport.name, o, submitted=submitted, now=now, retry=settings.retry)
            for r, o in zip(mine, outcomes, strict=True)
            if o.kind is not OutcomeKind.NOT_ME
        ]
        if updates:
            events = self.dispatcher.outcome_events(store, message, mine, updates)
            with anyio.CancelScope(shield=True):  # what was sent is recorded
                await outbox.record_outcomes(store, message_id, owner, updates, events=events)
            self.dispatcher.events_written(store, events)
            tried = {r.index: Tried(transport.name, o) for r, o in zip(mine, outcomes, strict=True)}
            recorded = [r for r in mine if tried[r.index].outcome.kind is not OutcomeKind.NOT_ME]
            maillog.outcomes(message, recorded, tried, updates, now - submitted)
            self._publish(
                store.name, message_id, [(r.address, u) for r, u in zip(recorded, updates, strict=True)]
            )
        states = {r.index: r.state for r in message.recipients} | {u.index: u.state for u in updates}
        if all(state is RecipientState.DELIVERED for state in states.values()):
            await store.finish(message_id, owner)
            return SubmitResult(message_id, queued=False, handled=len(updates))
        # The rest is the spooler's: other transports' recipients at once; if only our deferrals are
        # left, after their backoff. The spooler also reports failures (one NDR) when it finishes.
        waiting = [i for i, state in states.items() if not state.final]
        ours_deferred = {u.index for u in updates if u.state is RecipientState.DEFERRED}
        retry_at = None
        if waiting and set(waiting) <= ours_deferred:
            retry_at = min(u.next_attempt for u in updates if u.next_attempt is not None)
        return SubmitResult(message_id, queued=True, handled=len(updates), retry_at=retry_at)

    def _publish(
        self, store_name: str, message_id: str, updates: Sequence[tuple[str, RecipientUpdate]]
    ) -> None:
        """The hand-over's delivered / deferred / failed events, as the spooler's attempts raise them."""
        if self.spooler is None:
            return
        result = AttemptResult(recipients=[RecipientResult(address, u) for address, u in updates])
        for _, u in updates:
            if u.state is RecipientState.DELIVERED:
                result.delivered += 1
            elif u.state is RecipientState.FAILED:
                result.failed += 1
            else:
                result.deferred += 1
        for event in delivery_events(store_name, message_id, result, self.dispatcher.clock):
            self.spooler.events.publish(event)

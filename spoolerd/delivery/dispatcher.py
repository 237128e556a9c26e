"""One delivery attempt of one message: the MAPI spooler's work between SetLockState and FinishedMsg.

The Dispatcher runs the stages in order, each in its own module:

lock (a lease, renewed while in flight: ``leases``) → preprocessors and list expansion, then the
preprocess flag is cleared (the store's submit again: a tightly coupled store's transport then has the
first chance at the recipients it serves, seed 004) → route each recipient that has no final outcome
and send (``send``, bounded per transport and per destination, a dead destination not tried:
``limits``) → what it comes to (``decide``, no I/O) → record every outcome durably → NDR / DR into the
sender's store (``reports``) → finish, or unlock with a retry time.

A recipient recorded DELIVERED or FAILED is never sent again: only recipients without a final state are
routed, so a crash or a retry resends at most what was in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import anyio
import structlog

from .. import maillog, outbox
from ..dsn import RecipientStatus
from ..envelope import header_message_id
from ..errors import LockLost, NoAccess, NotFound, NotInQueue, StoreError
from ..events import SpoolerEvent
from ..message import Message, Recipient, RecipientUpdate
from ..outbox import OutboxEvent
from ..preprocess import Preprocessor, signs_last
from ..retry import DestinationCache
from ..routing import expand_recipients, route, serves
from ..slot import TransportSlot
from ..store import Clock, MessageStore
from ..transport import Outcome, Tried
from ..webhooks.events import WebhookEvents
from .decide import AttemptResult, Decision, SentCopy, begin, decide, expired_outcomes, pending
from .holds import Holds, waits_for
from .leases import Leases
from .limits import DestinationLimits
from .rates import RateBudgets
from .reports import file_report, forget_reports, warn_delayed
from .send import Sender
from .settings import DeliverySettings

__all__ = ["Dispatcher"]

log = structlog.get_logger("spoolerd.delivery")


class Dispatcher:
    """Runs delivery attempts; shared by all messages so limits and the destination cache are global."""

    def __init__(
        self,
        transports: Sequence[TransportSlot],
        preprocessors: Sequence[Preprocessor],
        settings: DeliverySettings,
        *,
        owner: str,
        clock: Clock,
        budget_store: MessageStore | None = None,
    ) -> None:
        self.preprocessors = list(preprocessors)
        self.owner = owner
        self.clock = clock
        self.leases = Leases(settings.lease)
        # store name -> messages whose unlock failed because the store did not answer: released as soon
        # as it answers again (``settle_unlocks``), not left locked until their leases expire
        self._unlocks_owed: dict[str, set[str]] = {}
        self.destinations = DestinationCache(hold=settings.destination_hold, maximum=settings.retry.maximum)
        self.holds = Holds()  # the messages waiting for a held destination
        limits = DestinationLimits(self.destinations, clock, self._publish)
        self.sender = Sender(limits, settings, RateBudgets(budget_store, clock))
        self.replace_transports(transports)  # after the sender: its rate budgets gate the transports
        self._settings = settings
        self.coupled: dict[str, str] = {}  # store name -> its coupled_transport (set by assembly, reload)
        self.publish: Callable[[SpoolerEvent], None] = lambda event: None  # the spooler's events
        self.webhooks: WebhookEvents | None = None  # [webhooks]: the events each outcome writes

    @property
    def settings(self) -> DeliverySettings:
        return self._settings

    @settings.setter
    def settings(self, settings: DeliverySettings) -> None:
        """A reload: the lease renewer re-arms at once, so a shorter lease is renewed in time."""
        self._settings = settings
        self.sender.settings = settings
        self.leases.lease = settings.lease

    def _publish(self, event: SpoolerEvent) -> None:
        self.publish(event)

    def replace_transports(self, transports: Sequence[TransportSlot]) -> None:
        """The transports new attempts use (a reload); an attempt under way keeps the ones it began with."""
        self.transports = list(transports)
        for slot in self.transports:
            if slot.abilities.use_rate_gate is not None:
                slot.abilities.use_rate_gate(self.sender.rates.gate(slot.name))
            slot.watch(self.sender.limits.changes)  # its relays' rows change as it reports them
        self._sent_copiers = {s.name: s.sent_copier for s in self.transports if s.sent_copier is not None}

    def slot(self, name: str) -> TransportSlot | None:
        return next((s for s in self.transports if s.name == name), None)

    # ------------------------------------------------------------------ one message

    async def attempt(
        self, store: MessageStore, message_id: str, *, force: bool = False, claimed: Message | None = None
    ) -> AttemptResult | None:
        """Lock, deliver what is pending, record it, and finish or unlock. ``None``: not ours to do
        (another spooler holds it, it left the queue meanwhile, or our lease was lost mid-way).
        ``claimed``: the message as a claim of the due head locked it already."""
        if claimed is not None:
            message = claimed
        else:
            try:
                message = await store.lock(message_id, self.owner, self.settings.lease)
            except (NoAccess, NotInQueue, NotFound):
                return None
            except StoreError:
                # the lease may have been taken and only the answer lost (a database connection cut at
                # the commit): hand it back once the store answers again, rather than wait out the lease
                self._unlocks_owed.setdefault(store.name, set()).add(message_id)
                raise
        result: AttemptResult | None = None
        async with self.leases.leased(store, message_id, self.owner):
            try:
                result = await self._attempt_locked(store, message, force=force)
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):  # shutting down or lease lost: hand it back
                    await self._release(store, message_id, None)
                raise
            except StoreError:
                # the store failed under us (a full disk, say): hand the message back if it still
                # answers, and let the spooler leave the store alone for a while (spoolerd/health.py)
                await self._release(store, message_id, self.clock() + self.settings.retry.initial)
                raise
            except Exception:
                # A store error, a broken preprocessor, a transport that raised outside send(): back
                # off as for a temporary failure, so the message is neither hammered nor stuck.
                log.exception("delivery attempt failed", store=store.name, message=message_id)
                retry_at = self.clock() + self.settings.retry.initial
                await self._release(store, message_id, retry_at)
                return AttemptResult(retry_at=retry_at)
        await self._postpone_held()
        if result is not None and result.sent is not None:  # out of the lease: the message left the queue
            await self._file_sent(result.sent)
        return result  # None: the lease was lost, the attempt cancelled and the message handed back

    async def _attempt_locked(self, store: MessageStore, message: Message, *, force: bool) -> AttemptResult:
        now = self.clock()
        settings = self.settings
        start = begin(message, now, settings.retry)
        refused: Outcome | None = None
        held: dict[int, str] = {}  # recipient -> the dead destination it was deferred behind
        owed = False  # preprocessed, nothing changed, the flag not cleared yet (``_preprocess``)
        if start.preprocess:
            message, refused, owed = await self._preprocess(store, message)
        if start.expired:  # checked before anything that could fail again: an old message always ends
            tried = expired_outcomes(pending(message))
        elif refused is not None:  # a preprocessor stopped it (a required signature it cannot make)
            tried = {r.index: Tried(None, refused) for r in pending(message)}
        else:
            # just preprocessed: the coupled store's resubmit hands its transport what it serves first
            first = self.coupled.get(store.name) if start.preprocess else None
            tried = await self.sender.route_and_send(
                self.transports, message, pending(message), force=force, started=now, first=first, held=held
            )
        decision = decide(message, tried, now, settings)
        self.holds.wait(store, message.id, None if decision.finish else waits_for(tried, held))
        result = decision.result
        events = self.outcome_events(store, message, decision.pending, decision.updates)
        if decision.finish and not decision.reports:
            # the common end: nothing happens between recording and finishing, so one transaction
            result.sent = self._sent(message, decision)
            with anyio.CancelScope(shield=True):  # what was sent is recorded, whatever happens next
                await self._owe_sent(store, result.sent)
                await outbox.finish(store, message.id, self.owner, outcomes=decision.updates, events=events)
            self.events_written(store, events)
            maillog.outcomes(
                message, decision.pending, tried, decision.updates, self.clock() - start.submitted
            )
            result.finished = True
            return result
        if decision.updates:
            with anyio.CancelScope(shield=True):  # recorded before any report goes out
                await outbox.record_outcomes(store, message.id, self.owner, decision.updates, events=events)
            self.events_written(store, events)
        maillog.outcomes(message, decision.pending, tried, decision.updates, self.clock() - start.submitted)
        if not decision.finish:
            if owed:  # it stays queued: the next attempt need not preprocess again
                await store.complete_preprocessing(message.id, self.owner)
            if decision.delay_warning is not None:
                warned = self._delay_events(store, message, decision.delay_warning.statuses)
                await warn_delayed(
                    store,
                    message,
                    decision.delay_warning,
                    now=now,
                    owner=self.owner,
                    settings=settings,
                    events=warned,
                )
                self.events_written(store, warned)
            await store.unlock(message.id, self.owner, retry_at=result.retry_at)
            return result
        for report in decision.reports:
            await file_report(store, message, report, now, settings)
        result.sent = self._sent(message, decision)
        await self._owe_sent(store, result.sent)
        await store.finish(message.id, self.owner)
        await forget_reports(store, message.id, [r.kind for r in decision.reports])  # the message is gone
        result.finished = True
        return result

    async def hand_back(self, store: MessageStore, message_id: str) -> None:
        """A message a claim leased that no attempt will take (a shutdown, or an attempt of it already
        under way): unlocked, due as it was; nothing if it is no longer ours."""
        await self._release(store, message_id, None)

    async def _release(self, store: MessageStore, message_id: str, retry_at: float | None) -> None:
        try:
            await store.unlock(message_id, self.owner, retry_at=retry_at)
        except (LockLost, NotInQueue, NotFound):
            pass  # no longer ours to hand back
        except StoreError:
            log.warning("unlock failed; retried when the store answers", store=store.name, message=message_id)
            self._unlocks_owed.setdefault(store.name, set()).add(message_id)

    async def _postpone_held(self) -> None:
        """Every message waiting for a destination held again since is due when the new hold ends, in
        one statement a store; destinations up again are forgotten (``holds``)."""
        renewed, self.sender.limits.renewed = self.sender.limits.renewed, {}
        for key, until in renewed.items():
            for store, message_ids in self.holds.waiting(key):
                try:
                    moved = await store.postpone(message_ids, until)
                except StoreError as exc:  # they come due at the old end, and are held again then
                    log.warning(
                        "postponing a held destination's messages failed", store=store.name, error=str(exc)
                    )
                    continue
                if moved:  # none moved (each already due later, or gone): nothing happened to tell
                    log.info(
                        "held destination's messages postponed",
                        destination=key,
                        store=store.name,
                        messages=moved,
                    )
        for key in self.holds.destinations():
            if not self.destinations.is_down(key):
                self.holds.forget(key)

    async def settle_unlocks(self, store: MessageStore) -> None:
        """Hand back the messages whose unlock failed while ``store`` did not answer (a database
        restarted, a full disk), due at once: the store, not the message, was at fault. Raises the
        store's error while it still fails; a message an attempt has locked again is left to it."""
        owed = self._unlocks_owed.get(store.name)
        while owed:
            message_id = owed.pop()
            if self.leases.held(store, message_id):
                continue
            try:
                await store.unlock(message_id, self.owner)
            except (LockLost, NoAccess, NotInQueue, NotFound):
                continue  # not ours after all (a lock whose answer was lost may never have been taken)
            except StoreError:
                owed.add(message_id)
                raise

    # ------------------------------------------------------------------ webhook events

    def outcome_events(
        self,
        store: MessageStore,
        message: Message,
        recipients: Sequence[Recipient],
        updates: Sequence[RecipientUpdate],
    ) -> list[OutboxEvent]:
        """The events of an attempt's outcomes, for the webhooks (none configured: none, at no cost)."""
        if self.webhooks is None or not updates:
            return []
        return self.webhooks.for_outcomes(store.name, message, recipients, updates, now=self.clock())

    def _delay_events(
        self, store: MessageStore, message: Message, statuses: Sequence[RecipientStatus]
    ) -> list[OutboxEvent]:
        if self.webhooks is None:
            return []
        return self.webhooks.for_delay(store.name, message, statuses, now=self.clock())

    def events_written(self, store: MessageStore, events: Sequence[OutboxEvent]) -> None:
        """Wake the webhook senders of ``store`` once ``events`` are committed."""
        if self.webhooks is not None:
            self.webhooks.written(store.name, events)

    # ------------------------------------------------------------------ sent copies

    def _sent(self, message: Message, decision: Decision) -> SentCopy | None:
        if not self._sent_copiers or not decision.delivered_by:
            return None
        return SentCopy(message, decision.delivered_by)

    async def _owe_sent(self, store: MessageStore, sent: SentCopy | None) -> None:
        """Before the finish: a transport that keeps its sent copies owed in the store (``owe_sent``)
        commits the debt, so a crash between the finish and ``file_sent`` loses no copy."""
        if sent is None:
            return
        for copier in self._sent_copiers.values():
            if copier.owe_sent is not None:
                await copier.owe_sent(store, sent.message, sent.delivered_by)

    async def _file_sent(self, sent: SentCopy) -> None:
        """Offer a copy of sent mail to the transports that file one (``sent_copies``)."""
        for name, copier in self._sent_copiers.items():
            try:
                with anyio.fail_after(self.settings.send_timeout):
                    await copier.file_sent(sent.message, sent.delivered_by)
            except Exception:  # a copy of what was sent: never a reason to fail the delivery
                log.exception("filing a sent copy failed", transport=name, message=sent.message.id)

    # ------------------------------------------------------------------ preprocessing

    async def _preprocess(
        self, store: MessageStore, message: Message
    ) -> tuple[Message, Outcome | None, bool]:
        """The message as the preprocessors leave it, saved; or, when one refuses it, the message as it
        was (nothing saved: the flag stays, so the next attempt preprocesses again) and that outcome.
        When they changed nothing, nothing is written now (True: the flag is still to clear): a message
        that finishes in this attempt never needs it cleared, one that stays queued has it cleared
        before its unlock, and a crash in between only preprocesses it again, to the same result."""
        content: bytes | None = None
        recipients = None
        current = message
        now = self.clock()
        for pre in self._preprocessors_for(message):
            result = await pre(current, now)
            if result.refused is not None:
                return message, result.refused, False
            if result.content is not None:
                content = result.content
                current = replace(current, content=content, size=len(content))
            if result.recipients is not None:
                recipients = list(result.recipients)
        expanded = expand_recipients(
            recipients if recipients is not None else message.recipients, self.settings.lists
        )
        before = [(r.address, r.address_type, r.kind) for r in message.recipients]
        unchanged = recipients is None and [(r.address, r.resolved_type, r.kind) for r in expanded] == before
        if content is None and unchanged:
            return message, None, True
        saved = await store.complete_preprocessing(
            message.id, self.owner, content=content, recipients=None if unchanged else expanded
        )
        added = header_message_id(content) if content is not None else ""
        if added and added != header_message_id(message.content):  # logged once saved, as every line
            maillog.message_id_added(queue_id=message.id, message_id=added)
        return saved, None, False

    def _preprocessors_for(self, message: Message) -> list[Preprocessor]:
        """Entry-point preprocessors, then each transport's, in transport order, and signers last. A
        transport's preprocessor runs when that transport handles one of the recipients, or, if it
        declares its own ``address_types`` (as a preprocessor-only transport's do), when a recipient has
        one of them."""
        chosen = list(self.preprocessors)
        if not any(slot.preprocessors for slot in self.transports):  # no transport brings one: no route
            return _signers_last(chosen)
        named = [(s.name, s) for s in self.transports]
        eligible = [s for _name, s in self.settings.sender_routes.eligible(message.sender, named)]
        plan = route(message.recipients, [(s.name, s.transport.address_types) for s in eligible])
        for slot in eligible:
            for pre in slot.preprocessors:
                if not pre.own_types:
                    applies = slot.name in plan.by_transport
                else:
                    types = pre.address_types
                    applies = any(serves(types, r.address_type) for r in message.recipients)
                if applies:
                    chosen.append(pre.run)
        return _signers_last(chosen)


def _signers_last(chosen: list[Preprocessor]) -> list[Preprocessor]:
    return sorted(chosen, key=signs_last) if len(chosen) > 1 else chosen

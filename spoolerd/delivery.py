"""One delivery attempt of one message: the MAPI spooler's work between SetLockState and FinishedMsg.

lock (a lease, renewed while in flight) → preprocessors and list expansion, then the preprocess flag is
cleared → route each recipient that has no final outcome by address type, in transport order, NOT_ME
falling through → send (bounded per transport and per destination; a dead destination is not tried) →
record every outcome durably → NDR / DR into the sender's store → finish, or unlock with a retry time.

A recipient recorded DELIVERED or FAILED is never sent again: only recipients without a final state are
routed, so a crash or a retry resends at most what was in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import structlog

from . import maillog
from .dsn import RecipientStatus, ReportKind, build_report, report_class
from .errors import LockLost, NoAccess, NotFound, NotInQueue, StoreError
from .events import SpoolerEvent
from .flush import dead_until_for_flush
from .message import (
    InboundMessage,
    Message,
    NewRecipient,
    Recipient,
    RecipientState,
    RecipientUpdate,
    StateChange,
    SubmitFlag,
)
from .message_class import canonical
from .preprocess import Preprocessor, signs_last
from .retry import DestinationCache, RetryPolicy
from .routing import SenderRoutes, expand_recipients, route, serves
from .slot import TransportSlot
from .store import Clock, MessageStore
from .transport import Outcome, OutcomeKind, Transport

__all__ = ["AttemptResult", "DeliverySettings", "Dispatcher", "RecipientResult"]

log = structlog.get_logger("spoolerd.delivery")


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    lease: float = 300.0
    send_timeout: float = 600.0
    destination_concurrency: int = 8
    destination_hold: float = 300.0
    reporting_mta: str = "localhost"
    report_original_limit: int = 50_000
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    delay_warning_after: float | None = None  # seconds queued before the sender is told (None: never)
    lists: Mapping[str, Sequence[str]] = field(default_factory=dict)
    bounce_copy_to: Sequence[str] = ()  # get a copy of every NDR ([addresses] bounce_copy_to, aliased)
    sender_routes: SenderRoutes = field(default_factory=SenderRoutes)  # [sender_routes]


@dataclass(frozen=True, slots=True)
class _Lease:
    store: MessageStore
    message_id: str
    owner: str
    scope: anyio.CancelScope  # cancelled if the lease is lost


@dataclass(slots=True)
class AttemptResult:
    """What one attempt did, counted per recipient."""

    delivered: int = 0
    deferred: int = 0
    failed: int = 0
    finished: bool = False
    retry_at: float | None = None
    sent: tuple[Message, frozenset[str]] | None = None  # finished: the message as sent, and by whom
    recipients: list[RecipientResult] = field(default_factory=list)  # what each recipient got, for events

    @property
    def deferrals(self) -> list[RecipientResult]:
        """The recipients left waiting, and why (what a flush answers)."""
        return [r for r in self.recipients if r.update.state is RecipientState.DEFERRED]


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """One recipient's outcome in an attempt: its address and what was recorded (or, for a recipient
    not tried, what it waits for)."""

    address: str
    update: RecipientUpdate


def _update(
    rcpt: Recipient, transport: str | None, outcome: Outcome, next_attempt: float | None
) -> RecipientUpdate:
    state = {
        OutcomeKind.DELIVERED: RecipientState.DELIVERED,
        OutcomeKind.FAILED: RecipientState.FAILED,
    }.get(outcome.kind, RecipientState.DEFERRED)
    return RecipientUpdate(
        rcpt.index, state, transport, outcome.code, outcome.status, outcome.diagnostic, next_attempt
    )


def _is_report(message: Message) -> bool:
    return canonical(message.message_class).startswith("report.")


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
    ) -> None:
        self.replace_transports(transports)
        self.preprocessors = list(preprocessors)
        self._rearm = anyio.Event()
        self._settings = settings
        self.owner = owner
        self.clock = clock
        self.destinations = DestinationCache(hold=settings.destination_hold)
        # destination -> [its limit, how many attempts use it]; only destinations in use have one (the
        # hot path uses asyncio's primitives directly: the daemon runs on asyncio, and anyio's cost more)
        self._destination_limits: dict[str, list[Any]] = {}
        self._leases: dict[int, _Lease] = {}  # attempts in flight, whose leases renew_leases keeps
        # store name -> messages whose unlock failed because the store did not answer: released as soon
        # as it answers again (``settle_unlocks``), not left locked until their leases expire
        self._unlocks_owed: dict[str, set[str]] = {}
        self._leases_changed = anyio.Event()
        self.renewal_timers = 0  # renewals on the lease timer: an idle daemon must not add to them
        self.publish: Callable[[SpoolerEvent], None] = lambda event: None  # the spooler's events

    def replace_transports(self, transports: Sequence[TransportSlot]) -> None:
        """The transports new attempts use (a reload); an attempt under way keeps the ones it began with."""
        self.transports = list(transports)
        self._sent_copiers = {s.name: s.sent_copier for s in self.transports if s.sent_copier is not None}

    def outcome_update(
        self, r: Recipient, transport: str | None, outcome: Outcome, submitted: float, now: float
    ) -> RecipientUpdate:
        """The durable record of one tried recipient: deferrals get their next attempt, or expire."""
        next_attempt = None
        if outcome.kind is OutcomeKind.DEFERRED:
            next_attempt = self.settings.retry.next_attempt(
                submitted, r.attempts + 1, now, outcome.retry_after
            )
            if next_attempt is None:
                outcome = _expired(r, outcome)
        return _update(r, transport, outcome, next_attempt)

    def _dead(self, key: str, count: int, force: bool) -> list[Outcome] | None:
        """Deferrals without an attempt when the destination is known dead (``force`` tries anyway)."""
        now = self.clock()
        until = None if force else dead_until_for_flush(key, self.destinations.dead_until(key, now))
        if until is None:
            return None
        destination = key.partition(":")[2]
        outcome = Outcome(
            OutcomeKind.DEFERRED,
            None,
            "4.4.1",
            f"destination {destination} is not responding; left alone until it is due",
            until - now,
            attempted=False,
        )
        return [outcome] * count

    def slot(self, name: str) -> TransportSlot | None:
        return next((s for s in self.transports if s.name == name), None)

    # ------------------------------------------------------------------ one message

    async def attempt(
        self, store: MessageStore, message_id: str, *, force: bool = False
    ) -> AttemptResult | None:
        """Lock, deliver what is pending, record it, and finish or unlock. ``None``: not ours to do
        (another spooler holds it, it left the queue meanwhile, or our lease was lost mid-way)."""
        try:
            message = await store.lock(message_id, self.owner, self.settings.lease)
        except (NoAccess, NotInQueue, NotFound):
            return None
        result: AttemptResult | None = None
        async with self.leased(store, message_id, self.owner):
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
        if result is not None and result.sent is not None:  # out of the lease: the message left the queue
            await self._file_sent(*result.sent)
        return result  # None: the lease was lost, the attempt cancelled and the message handed back

    async def _file_sent(self, message: Message, delivered_by: frozenset[str]) -> None:
        """Offer a copy of sent mail to the transports that file one (``sent_copies``)."""
        for name, copier in self._sent_copiers.items():
            try:
                with anyio.fail_after(self.settings.send_timeout):
                    await copier.file_sent(message, delivered_by)
            except Exception:  # a copy of what was sent: never a reason to fail the delivery
                log.exception("filing a sent copy failed", transport=name, message=message.id)

    async def _owe_sent(self, store: MessageStore, sent: tuple[Message, frozenset[str]] | None) -> None:
        """Before the finish: a transport that keeps its sent copies owed in the store (``owe_sent``)
        commits the debt, so a crash between the finish and ``file_sent`` loses no copy."""
        if sent is None:
            return
        for copier in self._sent_copiers.values():
            if copier.owe_sent is not None:
                await copier.owe_sent(store, *sent)

    def _sent(
        self, message: Message, updates: Sequence[RecipientUpdate]
    ) -> tuple[Message, frozenset[str]] | None:
        if not self._sent_copiers:
            return None
        applied = _applied(message, updates)
        by = frozenset(r.transport for r in applied if r.state is RecipientState.DELIVERED and r.transport)
        return (message, by) if by else None

    @asynccontextmanager
    async def leased(self, store: MessageStore, message_id: str, owner: str) -> AsyncIterator[None]:
        """Keep the lease renewed while the body runs (``renew_leases`` does it for every message in
        flight); if it is lost (taken over after expiry, or the message left the queue), cancel the body
        rather than race the new holder."""
        with anyio.CancelScope() as scope:
            lease = _Lease(store, message_id, owner, scope)
            self._leases[id(lease)] = lease
            self._leases_changed.set()
            try:
                yield
            finally:
                del self._leases[id(lease)]
                if not self._leases:
                    self._rearm.set()  # the renewer goes back to sleep now, not at its next timer

    @property
    def settings(self) -> DeliverySettings:
        return self._settings

    @settings.setter
    def settings(self, settings: DeliverySettings) -> None:
        """A reload: the lease renewer re-arms at once, so a shorter lease is renewed in time."""
        self._settings = settings
        self._rearm.set()

    async def renew_leases(self) -> None:
        """Run by the spooler: every third of the lease, renew every lease in flight, together (one
        group commit), each bounded by that third so one slow store cannot hold up the rest; while
        none is held, sleep until one is. It never raises: a failed renewal is tried again next time."""
        while True:
            if not self._leases:
                self._leases_changed = anyio.Event()
                await self._leases_changed.wait()
            self._rearm = anyio.Event()
            with anyio.move_on_after(self.settings.lease / 3) as timer:
                await self._rearm.wait()  # a reload: renew now, then at the new pace; or none is held
            self.renewal_timers += timer.cancelled_caught
            held = list(self._leases.values())
            if held:
                async with anyio.create_task_group() as tg:
                    for lease in held:
                        tg.start_soon(self._renew, lease)

    async def _renew(self, lease: _Lease) -> None:
        where = {"store": lease.store.name, "message": lease.message_id}
        try:
            with anyio.fail_after(self.settings.lease / 3):
                await lease.store.renew(lease.message_id, lease.owner, self.settings.lease)
        except (LockLost, NotInQueue, NotFound):
            if id(lease) in self._leases:  # not merely finished while the renewal was on its way
                log.warning("lease lost; abandoning the attempt", **where)
                lease.scope.cancel()
        except TimeoutError:
            log.warning("lease renewal timed out; trying again", **where)
        except Exception:  # a store plugin's surprise must not stop every other renewal
            log.exception("lease renewal failed; trying again", **where)

    async def _release(self, store: MessageStore, message_id: str, retry_at: float | None) -> None:
        try:
            await store.unlock(message_id, self.owner, retry_at=retry_at)
        except (LockLost, NotInQueue, NotFound):
            pass  # no longer ours to hand back
        except StoreError:
            log.warning("unlock failed; retried when the store answers", store=store.name, message=message_id)
            self._unlocks_owed.setdefault(store.name, set()).add(message_id)

    async def settle_unlocks(self, store: MessageStore) -> None:
        """Hand back the messages whose unlock failed while ``store`` did not answer (a database
        restarted, a full disk), due at once: the store, not the message, was at fault. Raises the
        store's error while it still fails; a message an attempt has locked again is left to it."""
        owed = self._unlocks_owed.get(store.name)
        while owed:
            message_id = owed.pop()
            if any(x.store is store and x.message_id == message_id for x in self._leases.values()):
                continue
            try:
                await store.unlock(message_id, self.owner)
            except (LockLost, NotInQueue, NotFound):
                continue
            except StoreError:
                owed.add(message_id)
                raise

    async def _attempt_locked(self, store: MessageStore, message: Message, *, force: bool) -> AttemptResult:
        now = self.clock()
        submitted = message.client_submit_time or message.created_at
        expired = self.settings.retry.expired(submitted, now)
        refused: Outcome | None = None
        if SubmitFlag.PREPROCESS in message.submit_flags and not expired:
            message, refused = await self._preprocess(store, message)
        pending = [r for r in message.recipients if not r.state.final]
        if expired:  # checked before anything that could fail again: an old message always ends
            outcomes = {r.index: (r.transport, _expired(r)) for r in pending}
        elif refused is not None:  # a preprocessor stopped it (a required signature it cannot make)
            outcomes = {r.index: (None, refused) for r in pending}
        else:
            outcomes = await self._route_and_send(message, pending, force=force)

        result, updates = self._tally(pending, outcomes, submitted, now)
        reports = [] if result.deferred else self._wanted_reports(message, _applied(message, updates), now)
        if not result.deferred and not reports:
            # the common end: nothing happens between recording and finishing, so one transaction
            result.sent = self._sent(message, updates)
            with anyio.CancelScope(shield=True):  # what was sent is recorded, whatever happens next
                await self._owe_sent(store, result.sent)
                await store.finish(message.id, self.owner, outcomes=updates)
            maillog.outcomes(message, pending, outcomes, updates, self.clock() - submitted)
            result.finished = True
            return result
        if updates:
            with anyio.CancelScope(shield=True):  # recorded before any report goes out
                await store.record_outcomes(message.id, self.owner, updates)
        maillog.outcomes(message, pending, outcomes, updates, self.clock() - submitted)
        if result.deferred:
            if self._delay_warning_due(message, submitted, now):
                await self._warn_delayed(store, message, updates, pending, now)
            await store.unlock(message.id, self.owner, retry_at=result.retry_at)
            return result
        for kind, statuses in reports:
            await self._deliver_report(store, message, kind, statuses, now)
        result.sent = self._sent(message, updates)
        await self._owe_sent(store, result.sent)
        await store.finish(message.id, self.owner)
        await _forget_reports(store, message.id, [kind for kind, _ in reports])  # the message is gone
        result.finished = True
        return result

    def _tally(
        self,
        pending: Sequence[Recipient],
        outcomes: Mapping[int, tuple[str | None, Outcome]],
        submitted: float,
        now: float,
    ) -> tuple[AttemptResult, list[RecipientUpdate]]:
        """What an attempt's outcomes come to: the counts, the next retry, and the updates to record."""
        result = AttemptResult()
        updates = []
        for r in pending:
            transport, outcome = outcomes[r.index]
            if not outcome.attempted:
                # not tried (dead destination, offline transport): no attempt to count, just a wait
                wait_until = now + (outcome.retry_after or self.settings.retry.initial)
                result.deferred += 1
                result.retry_at = wait_until if result.retry_at is None else min(result.retry_at, wait_until)
                result.recipients.append(
                    RecipientResult(r.address, _update(r, transport, outcome, wait_until))
                )
                continue
            update = self.outcome_update(r, transport, outcome, submitted, now)
            updates.append(update)
            result.recipients.append(RecipientResult(r.address, update))
            if update.state is RecipientState.DELIVERED:
                result.delivered += 1
            elif update.state is RecipientState.FAILED:
                result.failed += 1
            else:
                assert update.next_attempt is not None
                result.deferred += 1
                due = update.next_attempt
                result.retry_at = due if result.retry_at is None else min(result.retry_at, due)
        return result, updates

    async def _warn_delayed(
        self,
        store: MessageStore,
        message: Message,
        updates: Sequence[RecipientUpdate],
        pending: Sequence[Recipient],
        now: float,
    ) -> None:
        """File the delay warning, then mark it sent; a failure here never costs the attempt's outcomes
        (a crash between the two repeats a warning, never loses one)."""
        by_index = {r.index: r for r in pending}
        statuses = [
            RecipientStatus(by_index[u.index].address, u.status or "4.0.0", u.code, u.text or "", now)
            for u in updates
            if u.state is RecipientState.DEFERRED
        ]
        if not statuses:
            return
        try:
            await self._deliver_report(store, message, ReportKind.DELAY, statuses, now)
            await store.record_outcomes(message.id, self.owner, [], delay_reported=True)
            await _forget_reports(store, message.id, [ReportKind.DELAY])  # the flag remembers it now
        except StoreError:
            log.exception("could not file a delay warning", store=store.name, message=message.id)

    # ------------------------------------------------------------------ preprocessing

    async def _preprocess(self, store: MessageStore, message: Message) -> tuple[Message, Outcome | None]:
        """The message as the preprocessors leave it, saved; or, when one refuses it, the message as it
        was (nothing saved: the flag stays, so the next attempt preprocesses again) and that outcome."""
        content: bytes | None = None
        recipients = None
        current = message
        now = self.clock()
        for pre in self._preprocessors_for(message):
            result = await pre(current, now)
            if result.refused is not None:
                return message, result.refused
            if result.content is not None:
                content = result.content
                current = _with(current, content=content)
            if result.recipients is not None:
                recipients = list(result.recipients)
        expanded = expand_recipients(
            recipients if recipients is not None else message.recipients, self.settings.lists
        )
        before = [(r.address, r.address_type, r.kind) for r in message.recipients]
        unchanged = recipients is None and [(r.address, r.resolved_type, r.kind) for r in expanded] == before
        saved = await store.complete_preprocessing(
            message.id, self.owner, content=content, recipients=None if unchanged else expanded
        )
        return saved, None

    def _preprocessors_for(self, message: Message) -> list[Preprocessor]:
        """Entry-point preprocessors, then each transport's, in transport order, and signers last. A
        transport's preprocessor runs when that transport handles one of the recipients, or, if it
        declares its own ``address_types`` (as a preprocessor-only transport's do), when a recipient has
        one of them."""
        chosen = list(self.preprocessors)
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
        return sorted(chosen, key=signs_last)

    # ------------------------------------------------------------------ routing and sending

    async def _route_and_send(
        self, message: Message, pending: Sequence[Recipient], *, force: bool
    ) -> dict[int, tuple[str | None, Outcome]]:
        outcomes: dict[int, tuple[str | None, Outcome]] = {}
        refused: dict[int, set[str]] = {}
        remaining = list(pending)
        # this attempt's, even if a reload replaces them; of those [sender_routes] binds, this sender's only
        named = [(s.name, s) for s in self.transports]
        slots = dict(self.settings.sender_routes.eligible(message.sender, named))
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
                    outcomes[r.index] = (name, offline_outcome)
                else:
                    outcomes[r.index] = (None, _no_transport(r, refused.get(r.index)))
            remaining = []
            batches: list[tuple[str, list[Recipient], list[Outcome]]] = []
            if len(plan.by_transport) == 1:  # the common case: no task group needed
                ((name, recipients),) = plan.by_transport.items()
                await self._send_into(batches, slots[name], message, recipients, force)
            else:
                async with anyio.create_task_group() as tg:
                    for name, recipients in plan.by_transport.items():
                        tg.start_soon(self._send_into, batches, slots[name], message, recipients, force)
            for name, recipients, results in batches:
                for r, outcome in zip(recipients, results, strict=True):
                    if outcome.kind is OutcomeKind.NOT_ME:
                        refused.setdefault(r.index, set()).add(name)
                        remaining.append(r)
                    else:
                        outcomes[r.index] = (name, outcome)
        return outcomes

    async def _send_into(
        self,
        batches: list[tuple[str, list[Recipient], list[Outcome]]],
        slot: TransportSlot,
        message: Message,
        recipients: list[Recipient],
        force: bool,
    ) -> None:
        batches.append((slot.name, recipients, await self._send(slot, message, recipients, force=force)))

    async def _send(
        self, slot: TransportSlot, message: Message, recipients: list[Recipient], *, force: bool
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
            entry = self._destination_limits.get(key)
            if entry is None:
                own = slot.destination_concurrency
                entry = self._destination_limits[key] = [
                    asyncio.Semaphore(own or self.settings.destination_concurrency),
                    0,
                ]
            limit: asyncio.Semaphore = entry[0]
            entry[1] += 1  # users, waiting or in
            try:
                answers = self._dead(key, len(positions), force)
                if answers is None:
                    # the destination's own limit first: waiting for it must not hold a transport slot
                    async with limit, slot.limiter:
                        answers = self._dead(key, len(positions), force)  # it may have died meanwhile
                        if answers is None:
                            answers = await self.call_transport(
                                transport, message, [recipients[i] for i in positions]
                            )
                            slot.account(answers)
                    if any(o.kind is OutcomeKind.DELIVERED for o in answers):
                        down_since = self.destinations.succeeded(key)
                        if down_since is not None:
                            self._came_up(slot, destination, down_since)
                    elif answers and all(_destination_down(o) for o in answers):
                        hint = max((o.retry_after or 0.0) for o in answers)
                        if self.destinations.failed(key, self.clock(), hint or None):
                            self._went_down(slot, destination, answers[0])
            finally:
                entry[1] -= 1
                if entry[1] == 0:
                    self._destination_limits.pop(key, None)  # only busy destinations keep a limiter
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

    def _went_down(self, slot: TransportSlot, destination: str, outcome: Outcome) -> None:
        """One of the slot's destinations stopped answering: logged and published once per change."""
        relay = outcome.relay or destination
        reason = maillog.reply_text(outcome.diagnostic, relay)
        maillog.relay_down(transport=slot.name, relay=relay, dsn=outcome.status, reason=reason)
        was_ok = not slot.down
        slot.down[destination] = reason
        slot.last_error = f"{outcome.status or ''} {outcome.diagnostic}".strip()
        if was_ok:
            slot.since = self.clock()
            self._publish_state(slot)

    def _came_up(self, slot: TransportSlot, destination: str, down_since: float) -> None:
        maillog.relay_up(transport=slot.name, relay=destination, down_for=self.clock() - down_since)
        slot.down.pop(destination, None)
        if not slot.down:
            slot.since = self.clock()
            self._publish_state(slot)

    def _publish_state(self, slot: TransportSlot) -> None:
        self.publish(
            {
                "type": "status_changed",
                "name": slot.name,
                "state": slot.state,
                "last_error": slot.last_error if slot.down else None,
                "since": slot.since,
            }
        )

    async def call_transport(
        self, transport: Transport, message: Message, recipients: list[Recipient]
    ) -> list[Outcome]:
        try:
            async with asyncio.timeout(self.settings.send_timeout):
                answers = await transport.send(message, recipients)
        except TimeoutError:
            diagnostic = f"transport {transport.name} did not answer within {self.settings.send_timeout:g} s"
            return [Outcome.deferred(diagnostic, status="4.4.2")] * len(recipients)
        except Exception as exc:  # a crashing plugin must not take the spooler down with it
            log.exception("transport raised", transport=transport.name, message=message.id)
            diagnostic = f"transport {transport.name} failed: {type(exc).__name__}: {exc}"
            return [Outcome.deferred(diagnostic, status="4.3.0")] * len(recipients)
        if not isinstance(answers, list) or len(answers) != len(recipients):
            count = len(answers) if isinstance(answers, list) else "no list of"
            diagnostic = (
                f"transport {transport.name} answered {count} outcomes for {len(recipients)} recipients"
            )
            log.error("transport broke its contract", transport=transport.name, problem=diagnostic)
            return [Outcome.deferred(diagnostic, status="4.3.0")] * len(recipients)
        return answers

    # ------------------------------------------------------------------ reports

    def _delay_warning_due(self, message: Message, submitted: float, now: float) -> bool:
        after = self.settings.delay_warning_after
        return (
            after is not None
            and not message.delay_reported
            and now - submitted >= after
            and bool(message.sender)
            and not _is_report(message)
        )

    def _wanted_reports(
        self, message: Message, recipients: Sequence[Recipient], now: float
    ) -> list[tuple[ReportKind, list[RecipientStatus]]]:
        """One NDR for all failed recipients (if requested, which is the default), one DR if asked for;
        never a report on a report, nor to the null sender."""
        if not message.sender or _is_report(message):
            return []
        wanted = []
        if message.ndr_requested:
            wanted.append((ReportKind.NDR, RecipientState.FAILED))
        if message.dr_requested:
            wanted.append((ReportKind.DR, RecipientState.DELIVERED))
        reports = []
        for kind, state in wanted:
            default_status = "5.0.0" if kind is ReportKind.NDR else "2.0.0"
            statuses = [
                RecipientStatus(
                    r.address, r.last_status or default_status, r.last_code, r.last_text or "", now
                )
                for r in recipients
                if r.state is state
            ]
            if statuses:
                reports.append((kind, statuses))
        return reports

    async def _deliver_report(
        self,
        store: MessageStore,
        message: Message,
        kind: ReportKind,
        statuses: Sequence[RecipientStatus],
        now: float,
    ) -> None:
        """File a report about ``message`` in the sender's store, through its receive folder, once: the
        store remembers, in the same transaction, that it was filed, so an attempt that dies before it
        finishes the message (or marks the delay warned) does not file it again when it is repeated."""
        if await store.transport_state(REPORTS, _report_key(message.id, kind)):
            return
        content = build_report(
            kind,
            original=message.content,
            envelope_to=message.sender,
            recipients=statuses,
            reporting_mta=self.settings.reporting_mta,
            arrival=message.client_submit_time or message.created_at,
            now=now,
            original_limit=self.settings.report_original_limit,
        )
        label = {ReportKind.NDR: "Undelivered", ReportKind.DR: "Delivered", ReportKind.DELAY: "Delayed"}[kind]
        if kind is ReportKind.NDR and self.settings.bounce_copy_to:
            await self._copy_bounce(store, message, content, f"{label}: {message.subject}")
        filed = await store.deliver(
            InboundMessage(
                content,
                message_class=report_class(message.message_class, kind),
                subject=f"{label}: {message.subject}",
                received_at=now,
            ),
            state=StateChange(REPORTS, {_report_key(message.id, kind): b"filed"}),
        )
        maillog.report_filed(
            queue_id=message.id,
            kind=kind.value,
            recipients=len(statuses),
            store=store.name,
            folder=filed.folder_id,
            report_id=filed.message_id,
        )

    async def _copy_bounce(self, store: MessageStore, message: Message, content: bytes, subject: str) -> None:
        """Queue a copy of an NDR for the postmaster: on a relay-only host nobody reads the sender's
        Inbox. From the null sender, so the copy never bounces itself; queued before the NDR is filed,
        so a crash in between repeats the copy but never loses it."""
        from .submission import outgoing_draft, submit_outgoing  # submission imports this module

        to = [a for a in self.settings.bounce_copy_to if a.casefold() != message.sender.casefold()]
        if to:
            rcpts = [NewRecipient(a) for a in to]
            draft = await outgoing_draft(
                store, content, rcpts, sender="", subject=subject, sentmail=False, delete_after_submit=True
            )
            copy = await submit_outgoing(store, draft, preprocess=True)
            log.info("bounce copy queued", store=store.name, queue_id=copy, message=message.id, to=to)


REPORTS = "(spooler reports)"  # the spooler's own memory in a store: reports filed, per message


def _report_key(message_id: str, kind: ReportKind) -> str:
    return f"{message_id}/{kind.value}"


async def _forget_reports(store: MessageStore, message_id: str, kinds: Sequence[ReportKind]) -> None:
    """Drop what is no longer needed to avoid a second report; failing leaves a few bytes behind."""
    try:
        await store.set_transport_state(
            StateChange(REPORTS, {_report_key(message_id, k): None for k in kinds})
        )
    except StoreError:
        log.warning("could not forget filed reports", store=store.name, message=message_id)


def _expired(r: Recipient, last: Outcome | None = None) -> Outcome:
    reason = last.diagnostic if last is not None else (r.last_text or "")
    text = "delivery time expired" + (f"; last error: {reason}" if reason else "")
    return Outcome(OutcomeKind.FAILED, last.code if last else r.last_code, "4.4.7", text)


def _no_transport(r: Recipient, refused: set[str] | None) -> Outcome:
    if refused:
        tried = ", ".join(sorted(refused))
        return Outcome.failed(f"no transport accepted the recipient (declined by {tried})", None, "5.4.4")
    return Outcome.failed(f"no transport serves address type {r.address_type or '(none)'!r}", None, "5.4.4")


def _destination_down(outcome: Outcome) -> bool:
    """A deferral that speaks of the destination, not of one mailbox: no reply at all, or 4.4.x."""
    return outcome.kind is OutcomeKind.DEFERRED and (
        outcome.code is None or (outcome.status or "").startswith("4.4.")
    )


def _applied(message: Message, updates: Sequence[RecipientUpdate]) -> list[Recipient]:
    """The message's recipients as they stand once ``updates`` are recorded."""
    final = {u.index: u for u in updates}
    return [r if r.index not in final else _apply(r, final[r.index]) for r in message.recipients]


def _apply(r: Recipient, u: RecipientUpdate) -> Recipient:
    return replace(
        r, state=u.state, last_code=u.code, last_status=u.status, last_text=u.text, transport=u.transport
    )


def _with(message: Message, *, content: bytes) -> Message:
    return replace(message, content=content, size=len(content))

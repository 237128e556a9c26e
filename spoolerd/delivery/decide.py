"""The decision step of one delivery attempt: a sans-io core, no store, no transport, no clock of its own.

An attempt begins (``begin``) with the message as locked and the time: has it outlived its queue
lifetime (then nothing is sent, every recipient still waiting fails with 4.4.7), does it still need
its preprocessors. Once each pending recipient has what it got (``Tried``: sent and answered, deferred
without a try behind a dead destination or an offline transport, or refused by routing), ``decide``
says what the attempt comes to, as plain values the Dispatcher carries out:

- the durable update of every recipient that was tried: its final state, or its next attempt from the
  retry schedule (a deferral past the lifetime turns into a 4.4.7 failure); a recipient deferred
  without a try gets no update (it costs no attempt) but a time to wait;
- the counts, the earliest retry, and what each recipient got (for events and flushes);
- once no recipient waits: finish, with one NDR for every failed recipient and one DR for every
  delivered one that asked for it; never a report on a report nor to the null sender;
- while some wait: the retry time, and a delay warning when one is due and none went out yet.

Who asked for which report is the recipient's RFC 3461 NOTIFY (``dsn_params.wants``): FAILURE for an
NDR, SUCCESS for a DR, DELAY for a delay warning, NEVER for none; a recipient without NOTIFY has the
message's defaults (an NDR unless ``ndr_requested`` is off, a DR if ``dr_requested``, delay warnings).

A recipient with a final state is never pending again, so it is never sent nor reported twice. The
rules are checked for any input, and over a message's whole life, in tests/engine/test_decide.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..dsn import RecipientStatus, ReportKind
from ..dsn_params import Notify, wants
from ..message import Message, Recipient, RecipientState, RecipientUpdate, SubmitFlag
from ..message_class import canonical
from ..retry import RetryPolicy
from ..transport import Outcome, OutcomeKind, Tried
from .settings import DeliverySettings

__all__ = [
    "AttemptResult",
    "Decision",
    "RecipientResult",
    "Report",
    "SentCopy",
    "Start",
    "begin",
    "decide",
    "expired_outcomes",
    "pending",
    "recipient_update",
    "submitted_at",
]


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """One recipient's outcome in an attempt: its address and what was recorded (or, for a recipient
    not tried, what it waits for)."""

    address: str
    update: RecipientUpdate


@dataclass(frozen=True, slots=True)
class SentCopy:
    """A finished message as it was sent, and the transports that delivered it (for sent copies)."""

    message: Message
    delivered_by: frozenset[str]


@dataclass(slots=True)
class AttemptResult:
    """What one attempt did, counted per recipient."""

    delivered: int = 0
    deferred: int = 0
    failed: int = 0
    finished: bool = False
    retry_at: float | None = None
    sent: SentCopy | None = None  # finished, and a transport files sent copies
    recipients: list[RecipientResult] = field(default_factory=list)  # what each recipient got, for events

    @property
    def deferrals(self) -> list[RecipientResult]:
        """The recipients left waiting, and why (what a flush answers)."""
        return [r for r in self.recipients if r.update.state is RecipientState.DEFERRED]


@dataclass(frozen=True, slots=True)
class Report:
    """A report to file in the sender's store about some of the message's recipients."""

    kind: ReportKind
    statuses: tuple[RecipientStatus, ...]


@dataclass(frozen=True, slots=True)
class Start:
    """How an attempt begins."""

    submitted: float  # when the message was submitted: its lifetime counts from here
    expired: bool  # past its lifetime: nothing is sent, every pending recipient fails (4.4.7)
    preprocess: bool  # the preprocessors and list expansion still have to run


@dataclass(frozen=True, slots=True)
class Decision:
    """What an attempt comes to; ``finish`` or hand the message back until ``result.retry_at``."""

    pending: tuple[Recipient, ...]  # the recipients this attempt was about
    updates: tuple[RecipientUpdate, ...]  # to record durably: every tried recipient
    result: AttemptResult
    reports: tuple[Report, ...]  # to file before finishing (only when finishing)
    delay_warning: Report | None  # to file before handing back (only when not finishing)
    delivered_by: frozenset[str]  # finishing: the transports that delivered a recipient, in any attempt

    @property
    def finish(self) -> bool:
        return not self.result.deferred


def begin(message: Message, now: float, retry: RetryPolicy) -> Start:
    submitted = submitted_at(message)
    expired = retry.expired(submitted, now)
    return Start(submitted, expired, SubmitFlag.PREPROCESS in message.submit_flags and not expired)


def submitted_at(message: Message) -> float:
    """When the message was submitted (the client's time, else its creation): its lifetime's start."""
    return message.client_submit_time or message.created_at


def pending(message: Message) -> list[Recipient]:
    """The recipients still to deliver: all but those with a final outcome."""
    return [r for r in message.recipients if not r.state.final]


def expired_outcomes(recipients: Sequence[Recipient]) -> dict[int, Tried]:
    """What an expired message's recipients get, without a try: 4.4.7 with their last error."""
    return {r.index: Tried(r.transport, _expired(r)) for r in recipients}


def recipient_update(
    r: Recipient, transport: str | None, outcome: Outcome, *, submitted: float, now: float, retry: RetryPolicy
) -> RecipientUpdate:
    """The durable record of one tried recipient: deferrals get their next attempt, or expire."""
    next_attempt = None
    if outcome.kind is OutcomeKind.DEFERRED:
        next_attempt = retry.next_attempt(submitted, r.attempts + 1, now, outcome.retry_after)
        if next_attempt is None:
            outcome = _expired(r, outcome)
    return _update(r, transport, outcome, next_attempt)


def decide(message: Message, tried: Mapping[int, Tried], now: float, settings: DeliverySettings) -> Decision:
    """What an attempt of ``message`` begun at ``now`` comes to, given what each pending recipient got
    (``tried`` names every one of them)."""
    submitted = submitted_at(message)
    waiting = pending(message)
    result = AttemptResult()
    updates = []
    for r in waiting:
        got = tried[r.index]
        if got.outcome.attempted:
            update = recipient_update(
                r, got.transport, got.outcome, submitted=submitted, now=now, retry=settings.retry
            )
            updates.append(update)
        else:
            # not tried (dead destination, offline transport, a rate's turn): no attempt to count, just
            # a wait; a hint of 0 (a budget that frees now) is a wait of 0, not "no hint"
            hint = got.outcome.retry_after
            wait_until = now + (settings.retry.initial if hint is None else hint)
            update = _update(r, got.transport, got.outcome, wait_until)
        result.recipients.append(RecipientResult(r.address, update))
        if update.state is RecipientState.DELIVERED:
            result.delivered += 1
        elif update.state is RecipientState.FAILED:
            result.failed += 1
        else:
            due = update.next_attempt
            assert due is not None
            result.deferred += 1
            result.retry_at = due if result.retry_at is None else min(result.retry_at, due)
    if result.deferred:
        warning = _delay_warning(
            message, updates, waiting, submitted=submitted, now=now, after=settings.delay_warning_after
        )
        return Decision(tuple(waiting), tuple(updates), result, (), warning, frozenset())
    standing = _standing(message, updates)
    reports = _wanted_reports(message, standing, now)
    by = frozenset(s.transport for s in standing if s.state is RecipientState.DELIVERED and s.transport)
    return Decision(tuple(waiting), tuple(updates), result, tuple(reports), None, by)


def _wanted_reports(message: Message, standing: Sequence[_Standing], now: float) -> list[Report]:
    """One NDR for all failed recipients (if requested, which is the default), one DR if asked for;
    never a report on a report, nor to the null sender."""
    if not message.sender or _is_report(message):
        return []
    wanted = (
        (ReportKind.NDR, RecipientState.FAILED, Notify.FAILURE, message.ndr_requested, "5.0.0"),
        (ReportKind.DR, RecipientState.DELIVERED, Notify.SUCCESS, message.dr_requested, "2.0.0"),
    )
    reports = []
    for kind, state, event, default, default_status in wanted:
        statuses = tuple(
            _status(s, s.status or default_status, s.code, s.text, now)
            for s in standing
            if s.state is state and wants(s.notify, event, default)
        )
        if statuses:
            reports.append(Report(kind, statuses))
    return reports


def _status(
    r: Recipient | _Standing, status: str, code: int | None, text: str | None, now: float
) -> RecipientStatus:
    """What a report says of one recipient (with its ORCPT as the Original-Recipient)."""
    return RecipientStatus(r.address, status, code, text or "", now, original_recipient=r.orcpt)


def _delay_warning(
    message: Message,
    updates: Sequence[RecipientUpdate],
    waiting: Sequence[Recipient],
    *,
    submitted: float,
    now: float,
    after: float | None,
) -> Report | None:
    """A warning that the tried recipients still deferred wait (but those whose NOTIFY leaves out
    DELAY), once the message has been queued for ``after`` seconds; once per submission
    (``delay_reported``), never on a report nor to the null sender."""
    due = (
        after is not None
        and not message.delay_reported
        and now - submitted >= after
        and bool(message.sender)
        and not _is_report(message)
    )
    if not due:
        return None
    by_index = {r.index: r for r in waiting}
    statuses = tuple(
        _status(by_index[u.index], u.status or "4.0.0", u.code, u.text, now)
        for u in updates
        if u.state is RecipientState.DEFERRED and wants(by_index[u.index].notify, Notify.DELAY, True)
    )
    return Report(ReportKind.DELAY, statuses) if statuses else None


_FINAL_STATE = {OutcomeKind.DELIVERED: RecipientState.DELIVERED, OutcomeKind.FAILED: RecipientState.FAILED}


def _update(
    rcpt: Recipient, transport: str | None, outcome: Outcome, next_attempt: float | None
) -> RecipientUpdate:
    state = _FINAL_STATE.get(outcome.kind, RecipientState.DEFERRED)
    return RecipientUpdate(
        rcpt.index, state, transport, outcome.code, outcome.status, outcome.diagnostic, next_attempt
    )


def _expired(r: Recipient, last: Outcome | None = None) -> Outcome:
    reason = last.diagnostic if last is not None else (r.last_text or "")
    text = "delivery time expired" + (f"; last error: {reason}" if reason else "")
    return Outcome(OutcomeKind.FAILED, last.code if last else r.last_code, "4.4.7", text)


def _is_report(message: Message) -> bool:
    return canonical(message.message_class).startswith("report.")


@dataclass(slots=True)
class _Standing:
    """Where a recipient stands once the attempt's updates are recorded: what a report and the sent
    copy read of it (a light record, not a copy of the ``Recipient``: one per recipient per attempt)."""

    address: str
    state: RecipientState
    transport: str | None
    code: int | None
    status: str | None
    text: str | None
    notify: Notify | None  # what it asked to be told (RFC 3461)
    orcpt: str | None


def _standing(message: Message, updates: Sequence[RecipientUpdate]) -> list[_Standing]:
    """The message's recipients as they stand once ``updates`` are recorded."""
    final = {u.index: u for u in updates}
    return [
        _Standing(r.address, r.state, r.transport, r.last_code, r.last_status, r.last_text, r.notify, r.orcpt)
        if (u := final.get(r.index)) is None
        else _Standing(r.address, u.state, u.transport, u.code, u.status, u.text, r.notify, r.orcpt)
        for r in message.recipients
    ]

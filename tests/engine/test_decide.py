"""The decision step of a delivery attempt (spoolerd/delivery/decide.py), in memory: no store, no
transport, no clock. Properties for any message, outcomes and time, and over a message's whole life
(attempt after attempt, recorded as a store would, until it is finished)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolerd.delivery.decide import (
    Decision,
    begin,
    decide,
    expired_outcomes,
    pending,
    recipient_update,
    submitted_at,
)
from spoolerd.delivery.settings import DeliverySettings
from spoolerd.dsn import ReportKind
from spoolerd.dsn_params import Notify
from spoolerd.message import (
    Message,
    MessageFlag,
    Recipient,
    RecipientKind,
    RecipientState,
    SubmitFlag,
)
from spoolerd.retry import RetryPolicy
from spoolerd.transport import Outcome, OutcomeKind, Tried

T0 = 1_800_000_000.0


def retry_policies(shortest: float, lifetime: tuple[float, float]) -> st.SearchStrategy[RetryPolicy]:
    """Retry schedules whose waits are ``shortest`` seconds at least, with a lifetime in ``lifetime``."""
    return st.builds(
        RetryPolicy,
        initial=st.floats(shortest, 3600.0),
        maximum=st.floats(shortest, 20_000.0),
        multiplier=st.floats(1.0, 4.0),
        give_up_after=st.floats(*lifetime),
        min_hint=st.floats(shortest, max(shortest, 600.0)),
    )


policies = retry_policies(1.0, (0.0, 10 * 86400.0))

states = st.sampled_from(list(RecipientState))
# RFC 3461 NOTIFY as a submitter gives it: not given (None), NEVER, or some of the three
notifies = (
    st.none()
    | st.just(Notify.NEVER)
    | st.sampled_from(list(Notify))
    | st.just(Notify.SUCCESS | Notify.FAILURE | Notify.DELAY)
)


@st.composite
def recipients(draw: st.DrawFn, min_size: int = 1, max_size: int = 6) -> tuple[Recipient, ...]:
    count = draw(st.integers(min_size, max_size))
    result = []
    for i in range(count):
        state = draw(states)
        tried = state is not RecipientState.PENDING
        result.append(
            Recipient(
                index=i,
                address=f"r{i}@example.net",
                display_name="",
                address_type="SMTP",
                kind=RecipientKind.TO,
                state=state,
                attempts=draw(st.integers(1, 100_000)) if tried else 0,
                last_code=draw(st.sampled_from([None, 250, 451, 550])) if tried else None,
                last_status=draw(st.sampled_from([None, "2.0.0", "4.2.0", "5.1.1"])) if tried else None,
                last_text="earlier" if tried else None,
                transport=draw(st.sampled_from([None, "relay", "local"])) if tried else None,
                notify=draw(notifies),
                orcpt=draw(st.sampled_from([None, f"rfc822;o{i}@example.net"])),
            )
        )
    return tuple(result)


@st.composite
def messages(
    draw: st.DrawFn,
    rcpts: st.SearchStrategy[tuple[Recipient, ...]] | None = None,
    *,
    reportable: bool = False,
) -> Message:
    """Any message; ``reportable``: one the sender may get reports about (not a report, not from <>)."""
    content = b"Subject: hi\r\n\r\nbody\r\n"
    classes = ["IPM.Note"] if reportable else ["IPM.Note", "IPM.Note", "REPORT.IPM.Note.NDR"]
    senders = ["me@example.org"] if reportable else ["me@example.org", "me@example.org", ""]
    return Message(
        id="Q1",
        folder_id="outbox",
        message_class=draw(st.sampled_from(classes)),
        flags=MessageFlag.SUBMIT,
        submit_flags=draw(st.sampled_from([SubmitFlag.LOCKED, SubmitFlag.LOCKED | SubmitFlag.PREPROCESS])),
        priority=0,
        sender=draw(st.sampled_from(senders)),
        subject="hi",
        size=len(content),
        content=content,
        recipients=draw(rcpts if rcpts is not None else recipients()),
        created_at=T0,
        client_submit_time=draw(st.none() | st.floats(T0 - 86400.0, T0)),
        not_before=None,
        next_attempt=None,
        sentmail_folder=None,
        delete_after_submit=False,
        ndr_requested=draw(st.booleans()),
        dr_requested=draw(st.booleans()),
        lock_owner="spooler",
        lock_expiry=None,
        delay_reported=draw(st.booleans()),
    )


ANY_KIND = (OutcomeKind.DELIVERED, OutcomeKind.DEFERRED, OutcomeKind.FAILED)
MOSTLY_DEFERRED = (OutcomeKind.DELIVERED, OutcomeKind.FAILED, *[OutcomeKind.DEFERRED] * 6)


@st.composite
def outcomes(draw: st.DrawFn, min_wait: float = 0.0, kinds: tuple[OutcomeKind, ...] = ANY_KIND) -> Outcome:
    """What a transport (or the spooler, for a recipient it did not try) can answer."""
    kind = draw(st.sampled_from(kinds))
    if kind is OutcomeKind.DELIVERED:
        return Outcome.delivered("ok")
    if kind is OutcomeKind.FAILED:
        return Outcome.failed("no such user", draw(st.sampled_from([None, 550])), "5.1.1")
    hint = draw(st.none() | st.floats(min_wait, 7 * 86400.0))
    if draw(st.booleans()):  # deferred without a try: dead destination, offline transport
        return Outcome(OutcomeKind.DEFERRED, None, "4.4.1", "not responding", hint, attempted=False)
    return Outcome.deferred("try later", draw(st.sampled_from([None, 421, 451])), "4.2.0", hint)


def tried_for(
    data: st.DataObject, message: Message, min_wait: float = 0.0, kinds: tuple[OutcomeKind, ...] = ANY_KIND
) -> dict[int, Tried]:
    return {
        r.index: Tried(
            data.draw(st.sampled_from([None, "relay", "local"])), data.draw(outcomes(min_wait, kinds))
        )
        for r in pending(message)
    }


def record(message: Message, decision: Decision) -> Message:
    """What a store keeps of a decision: the updates (a final state never overwritten, one attempt more
    per tried recipient), and the delay warning once it went out."""
    updates = {u.index: u for u in decision.updates}
    rcpts = []
    for r in message.recipients:
        u = updates.get(r.index)
        if u is None or r.state.final:
            rcpts.append(r)
            continue
        rcpts.append(
            replace(
                r,
                state=u.state,
                attempts=r.attempts + 1,
                next_attempt=u.next_attempt,
                last_code=u.code,
                last_status=u.status,
                last_text=u.text,
                transport=u.transport,
            )
        )
    warned = message.delay_reported or decision.delay_warning is not None
    return replace(message, recipients=tuple(rcpts), delay_reported=warned)


def asked(r: Recipient, event: Notify, message: Message) -> bool:
    """Whether ``r`` asked for a report of ``event``: its NOTIFY, else the message's default."""
    if r.notify is not None:
        return event in r.notify
    return {Notify.FAILURE: message.ndr_requested, Notify.SUCCESS: message.dr_requested}.get(event, True)


def is_report(message: Message) -> bool:
    return message.message_class.upper().startswith("REPORT.")


@given(st.data(), messages(), policies, st.floats(0.0, 30 * 86400.0), st.none() | st.floats(0.0, 86400.0))
def test_every_pending_recipient_ends_in_exactly_one_state(
    data: st.DataObject, message: Message, retry: RetryPolicy, elapsed: float, warn_after: float | None
) -> None:
    now = T0 + elapsed
    tried = tried_for(data, message)
    decision = decide(message, tried, now, DeliverySettings(retry=retry, delay_warning_after=warn_after))
    result = decision.result
    waiting = [r for r in message.recipients if not r.state.final]
    assert list(decision.pending) == waiting
    # each pending recipient once, in order; no recipient with a final state is touched
    assert [r.address for r in result.recipients] == [r.address for r in waiting]
    assert [r.update.index for r in result.recipients] == [r.index for r in waiting]
    assert result.delivered + result.deferred + result.failed == len(waiting)
    counted = Counter(r.update.state for r in result.recipients)
    assert counted[RecipientState.DELIVERED] == result.delivered
    assert counted[RecipientState.FAILED] == result.failed
    assert counted[RecipientState.DEFERRED] == result.deferred
    assert RecipientState.PENDING not in counted
    # only what was tried is recorded (a recipient deferred without a try costs no attempt)
    recorded = [u.index for u in decision.updates]
    assert recorded == [r.index for r in waiting if tried[r.index].outcome.attempted]
    for r in result.recipients:
        outcome = tried[r.update.index].outcome
        if outcome.kind is OutcomeKind.DEFERRED and r.update.state is RecipientState.FAILED:
            assert r.update.status == "4.4.7" and "delivery time expired" in (r.update.text or "")
        elif outcome.kind is not OutcomeKind.DEFERRED:
            assert r.update.state.value == outcome.kind.value and r.update.next_attempt is None
    assert decision.finish == (result.deferred == 0)
    assert result.deferrals == [r for r in result.recipients if r.update.state is RecipientState.DEFERRED]


@given(st.data(), messages(), policies, st.floats(0.0, 30 * 86400.0))
def test_the_retry_time_is_the_earliest_deferral_and_bounded_by_the_schedule(
    data: st.DataObject, message: Message, retry: RetryPolicy, elapsed: float
) -> None:
    now = T0 + elapsed
    tried = tried_for(data, message)
    result = decide(message, tried, now, DeliverySettings(retry=retry)).result
    dues = [r.update.next_attempt for r in result.recipients if r.update.state is RecipientState.DEFERRED]
    if not dues:
        assert result.retry_at is None
        return
    assert result.retry_at == min(d for d in dues if d is not None) and None not in dues
    hints = [t.outcome.retry_after or 0.0 for t in tried.values()]
    ceiling = max(retry.initial, retry.maximum, retry.min_hint, *hints)
    for due in dues:
        assert due is not None and now <= due <= now + ceiling  # (a dead destination's wait may be ~0)


@given(st.data(), messages(), policies, st.floats(0.0, 30 * 86400.0))
def test_reports_only_at_the_end_once_each_and_as_asked(
    data: st.DataObject, message: Message, retry: RetryPolicy, elapsed: float
) -> None:
    now = T0 + elapsed
    decision = decide(message, tried_for(data, message), now, DeliverySettings(retry=retry))
    kinds = [r.kind for r in decision.reports]
    assert len(kinds) == len(set(kinds)) and ReportKind.DELAY not in kinds
    if not decision.finish:
        assert kinds == [] and decision.delivered_by == frozenset()
        return
    assert decision.delay_warning is None
    final = record(message, decision).recipients
    assert all(r.state.final for r in final)
    failed = [r.address for r in final if r.state is RecipientState.FAILED]
    delivered = [r.address for r in final if r.state is RecipientState.DELIVERED]
    may_report = bool(message.sender) and not is_report(message)
    by_kind = {r.kind: [s.address for s in r.statuses] for r in decision.reports}
    # one NDR naming every failed recipient that asked (NOTIFY=FAILURE, or no NOTIFY and the message's
    # default), one DR for the delivered that asked; none from the null sender nor on a report
    ndr = [r.address for r in final if r.state is RecipientState.FAILED and asked(r, Notify.FAILURE, message)]
    dr = [
        r.address for r in final if r.state is RecipientState.DELIVERED and asked(r, Notify.SUCCESS, message)
    ]
    assert set(ndr) <= set(failed) and set(dr) <= set(delivered)
    assert by_kind.get(ReportKind.NDR, []) == (ndr if may_report else [])
    assert by_kind.get(ReportKind.DR, []) == (dr if may_report else [])
    orcpts = {r.address: r.orcpt for r in final}
    for report in decision.reports:
        assert all(s.original_recipient == orcpts[s.address] for s in report.statuses)
    assert decision.delivered_by == {r.transport for r in final if r.state is RecipientState.DELIVERED} - {
        None
    }


@given(st.data(), messages(), policies, st.floats(0.0, 30 * 86400.0), st.floats(0.0, 86400.0))
def test_a_delay_warning_names_the_tried_deferrals_once_due(
    data: st.DataObject, message: Message, retry: RetryPolicy, elapsed: float, warn_after: float
) -> None:
    now = T0 + elapsed
    settings = DeliverySettings(retry=retry, delay_warning_after=warn_after)
    decision = decide(message, tried_for(data, message), now, settings)
    warning = decision.delay_warning
    due = (
        not decision.finish
        and not message.delay_reported
        and now - submitted_at(message) >= warn_after
        and bool(message.sender)
        and not is_report(message)
    )
    by_index = {r.index: r for r in message.recipients}
    deferred = {
        u.index
        for u in decision.updates
        if u.state is RecipientState.DEFERRED and asked(by_index[u.index], Notify.DELAY, message)
    }
    if not due or not deferred:
        assert warning is None
        return
    assert warning is not None and warning.kind is ReportKind.DELAY
    addresses = [r.address for r in message.recipients if r.index in deferred]
    assert [s.address for s in warning.statuses] == addresses


@given(messages(), policies)
def test_an_expired_message_is_not_sent_and_every_waiting_recipient_fails_with_4_4_7(
    message: Message, retry: RetryPolicy
) -> None:
    now = submitted_at(message) + retry.give_up_after + 1.0  # (not on the boundary: float sums round)
    start = begin(message, now, retry)
    assert start.expired and not start.preprocess
    decision = decide(message, expired_outcomes(pending(message)), now, DeliverySettings(retry=retry))
    assert decision.finish and decision.result.retry_at is None
    assert all(u.state is RecipientState.FAILED and u.status == "4.4.7" for u in decision.updates)
    assert [u.index for u in decision.updates] == [r.index for r in pending(message)]


@given(messages(), policies, st.floats(0.0, 10 * 86400.0))
def test_begin_preprocesses_only_a_live_message_that_asks(
    message: Message, retry: RetryPolicy, elapsed: float
) -> None:
    start = begin(message, T0 + elapsed, retry)
    assert start.submitted == (message.client_submit_time or message.created_at)
    assert start.expired == (T0 + elapsed - start.submitted >= retry.give_up_after)
    assert start.preprocess == (SubmitFlag.PREPROCESS in message.submit_flags and not start.expired)


life_policies = retry_policies(60.0, (600.0, 4 * 3600.0))


@given(
    st.data(),
    messages(recipients(max_size=4), reportable=True),
    life_policies,
    st.floats(0.0, 3600.0),
)
def test_a_message_life_ends_with_each_recipient_final_sent_until_final_and_reported_once(
    data: st.DataObject, message: Message, retry: RetryPolicy, warn_after: float
) -> None:
    """Attempt after attempt at each retry time, recorded as a store would, until finished: it ends
    before the lifetime is over by much, never sends to a recipient with a final state, files each
    report at most once, and leaves every recipient DELIVERED or FAILED."""
    settings = DeliverySettings(retry=retry, delay_warning_after=warn_after)
    now = submitted_at(message) + data.draw(st.floats(0.0, 3600.0))
    filed: list[ReportKind] = []
    delay_reported = message.delay_reported
    for _ in range(int(retry.give_up_after / 60.0) + 3):  # each retry is a minute away at least
        start = begin(message, now, retry)
        todo = pending(message)
        assert all(not r.state.final for r in todo)
        if start.expired:
            tried = expired_outcomes(todo)
        else:
            tried = tried_for(data, message, min_wait=60.0, kinds=MOSTLY_DEFERRED)
        decision = decide(message, tried, now, settings)
        filed += [r.kind for r in decision.reports]
        if decision.delay_warning is not None:
            assert not message.delay_reported  # once per submission
            filed.append(ReportKind.DELAY)
        message = record(message, decision)
        if decision.finish:
            break
        assert decision.result.retry_at is not None and decision.result.retry_at >= now + 60.0
        now = decision.result.retry_at
    else:
        pytest.fail("the message outlived its lifetime")
    assert all(r.state.final for r in message.recipients)
    assert len(filed) == len(set(filed))
    if delay_reported:
        assert ReportKind.DELAY not in filed


@given(st.integers(0, 10**6), st.floats(0.0, 10 * 86400.0), policies, st.none() | st.floats(0.0, 86400.0))
def test_a_deferral_is_retried_within_the_lifetime_or_fails_as_expired(
    attempts: int, elapsed: float, retry: RetryPolicy, hint: float | None
) -> None:
    r = Recipient(0, "a@example.net", "", "SMTP", RecipientKind.TO, attempts=attempts)
    update = recipient_update(
        r, "relay", Outcome.deferred("busy", 451, "4.2.0", hint), submitted=T0, now=T0 + elapsed, retry=retry
    )
    if retry.expired(T0, T0 + elapsed):
        assert (update.state, update.status, update.next_attempt) == (RecipientState.FAILED, "4.4.7", None)
        assert update.code == 451 and update.text == "delivery time expired; last error: busy"
    else:
        assert update.state is RecipientState.DEFERRED and update.status == "4.2.0"
        assert update.next_attempt == T0 + elapsed + retry.delay(attempts + 1, hint)


def test_a_delay_warning_goes_once_per_submission() -> None:
    rcpt = Recipient(0, "a@example.net", "", "SMTP", RecipientKind.TO)
    message = Message(
        "Q1", "outbox", "IPM.Note", MessageFlag.SUBMIT, SubmitFlag.LOCKED, 0, "me@example.org", "hi", 1,
        b"x", (rcpt,), T0, None, None, None, None, False, True, False, "spooler", None,
    )  # fmt: skip
    settings = DeliverySettings(delay_warning_after=3600.0)
    busy = {0: Tried("relay", Outcome.deferred("busy", 451, "4.2.0"))}
    assert decide(message, busy, T0 + 3599.0, settings).delay_warning is None  # not yet
    warning = decide(message, busy, T0 + 3600.0, settings).delay_warning
    assert warning is not None and [(s.address, s.status, s.code) for s in warning.statuses] == [
        ("a@example.net", "4.2.0", 451)
    ]
    assert decide(replace(message, delay_reported=True), busy, T0 + 7200.0, settings).delay_warning is None
    dead = {0: Tried("relay", Outcome(OutcomeKind.DEFERRED, None, "4.4.1", "down", 60.0, attempted=False))}
    assert decide(message, dead, T0 + 7200.0, settings).delay_warning is None  # not tried: nothing to tell


@given(st.sampled_from([0.0, 0.001, 0.5, 30.0, None]))
def test_an_untried_recipient_waits_exactly_its_hint(hint: float | None) -> None:
    """Deferred without a try (a dead destination, a rate's turn): no attempt counted and a wait of the
    hint, 0 included (a budget that frees now); the schedule's first wait only when there is none."""
    rcpt = Recipient(0, "a@example.net", "", "SMTP", RecipientKind.TO)
    message = Message(
        "Q1", "outbox", "IPM.Note", MessageFlag.SUBMIT, SubmitFlag.LOCKED, 0, "me@example.org", "hi", 1,
        b"x", (rcpt,), T0, None, None, None, None, False, True, False, "spooler", None,
    )  # fmt: skip
    settings = DeliverySettings()
    turn = Outcome(OutcomeKind.DEFERRED, None, "4.7.0", "waits its turn", hint, attempted=False)
    decision = decide(message, {0: Tried("relay", turn)}, T0 + 10.0, settings)
    wait = settings.retry.initial if hint is None else hint
    assert decision.updates == () and decision.result.retry_at == T0 + 10.0 + wait

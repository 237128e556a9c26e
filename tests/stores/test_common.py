"""The dialect-neutral parts of the built-in stores (``stores.common``), in memory: the queueing plan,
the lease rules and the named rows."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolerd.errors import (
    InvalidArgument,
    LockLost,
    NoAccess,
    NoSupport,
    NotInQueue,
    Submitted,
    UnableToAbort,
)
from spoolerd.message import Draft, MessageFlag, NewRecipient, SubmitFlag
from spoolerd.message_class import outbound_class
from stores.common.queueing import NEW_QUEUED_COLUMNS, QUEUED_COLUMNS, Queued, QueueRequest
from stores.common.rows import ARRIVAL_COLUMNS, DRAFT_COLUMNS, Arrival, DraftRow
from stores.common.rules import Lease, MessageState, due, int_id

times = st.floats(min_value=0, max_value=1e10, allow_nan=False)
flags = st.integers(min_value=0, max_value=0xFFFF)
classes = st.sampled_from(["", "IPM", "IPM.Note", "ipm.note.custom", "REPORT.IPM.Note.NDR", "Other"])
owners = st.text(alphabet="abcdef#-_%", min_size=1, max_size=8)


def _named(cls: type, exclude: tuple[str, ...] = ()) -> object:
    """An instance whose every field holds its own name: values() then shows the order it writes."""
    return cls(**{f.name: f.name for f in fields(cls) if f.name not in exclude}, **{n: None for n in exclude})


def test_values_come_in_the_order_of_their_columns() -> None:
    assert _named(DraftRow).values() == DRAFT_COLUMNS  # type: ignore[attr-defined]
    assert _named(Arrival, ("content", "state")).values() == ARRIVAL_COLUMNS  # type: ignore[attr-defined]
    assert _named(Queued, ("resend",)).values() == QUEUED_COLUMNS  # type: ignore[attr-defined]


@given(
    message_class=classes,
    draft_flags=flags,
    not_before=st.none() | times,
    now=times,
    preprocess=st.booleans(),
)
def test_a_new_queued_row_is_the_draft_row_as_submit_would_queue_it(
    message_class: str, draft_flags: int, not_before: float | None, now: float, preprocess: bool
) -> None:
    draft = Draft(
        b"x", [NewRecipient("a@example.org")], message_class=message_class, flags=MessageFlag(draft_flags),
        not_before=not_before,
    )  # fmt: skip
    row = DraftRow.of(draft, sentmail_folder=7)
    request = QueueRequest.checked(now, preprocess, None)
    queued = request.plan_new(row)
    written = dict(zip(NEW_QUEUED_COLUMNS, queued.new_values(row), strict=True))
    assert set(written) == set(DRAFT_COLUMNS) | set(QUEUED_COLUMNS)
    as_draft = dict(zip(DRAFT_COLUMNS, row.values(), strict=True))
    as_queued = dict(zip(QUEUED_COLUMNS, queued.values(), strict=True))
    assert written == as_draft | as_queued
    assert queued == request.plan(row.message_class, row.flags, row.not_before)


@given(
    message_class=classes,
    stored=flags,
    not_before=st.none() | times,
    now=times,
    preprocess=st.booleans(),
    lock=st.none() | st.tuples(owners, st.floats(min_value=0, max_value=1e6)),
)
def test_the_queueing_plan(
    *,
    message_class: str,
    stored: int,
    not_before: float | None,
    now: float,
    preprocess: bool,
    lock: tuple[str, float] | None,
) -> None:
    queued = QueueRequest.checked(now, preprocess, lock).plan(message_class, stored, not_before)
    assert queued.flags == stored | MessageFlag.SUBMIT | MessageFlag.UNSENT
    assert queued.message_class == outbound_class(message_class)
    assert queued.submit_flags == (SubmitFlag.PREPROCESS if preprocess else 0)
    assert queued.client_submit_time == now and queued.queued and queued.next_attempt is None
    assert queued.due_at >= now and (not_before is None or queued.due_at >= not_before)
    assert queued.due_at in (now, not_before)
    assert not queued.delay_reported and not queued.held
    assert queued.resend == bool(stored & MessageFlag.RESEND)
    if lock is None:
        assert (queued.lock_owner, queued.lock_expiry) == (None, None)
    else:
        assert (queued.lock_owner, queued.lock_expiry) == (lock[0], now + lock[1])


@pytest.mark.parametrize(
    "lock", [("", 60.0), ("a\r\nb", 60.0), ("owner", math.nan), ("owner", math.inf), ("owner", -math.inf)]
)
def test_a_bad_lock_is_refused_before_any_transaction(lock: tuple[str, float]) -> None:
    with pytest.raises(InvalidArgument):
        QueueRequest.checked(1.0, False, lock)


def test_submit_new_refuses_a_draft_without_recipients() -> None:
    from spoolerd.errors import NoRecipients

    with pytest.raises(NoRecipients):
        QueueRequest.checked_new(Draft(b"x", []), 1.0, False, None)


@given(
    queued=st.booleans(),
    owner=st.none() | st.sampled_from(["me", "other"]),
    expiry=st.none() | times,
    now=times,
)
def test_the_lease_rules(queued: bool, owner: str | None, expiry: float | None, now: float) -> None:
    state = MessageState(queued, owner, None if owner is None else expiry)
    live = owner is not None and expiry is not None and expiry > now
    assert state.locked(now) == live
    lease = Lease.of(state.lock_owner, state.lock_expiry, now)
    assert (lease.owner is not None) == live
    assert (SubmitFlag.LOCKED in lease.submit_flags(SubmitFlag.LOCKED | SubmitFlag.PREPROCESS)) == live

    def refused(check: object, *args: object) -> type[Exception] | None:
        try:
            check(*args)  # type: ignore[operator]
        except Exception as exc:
            return type(exc)
        return None

    not_queued = NotInQueue if not queued else None
    assert refused(state.refuse_if_queued, now, "saved") == (
        NoAccess if live else Submitted if queued else None
    )
    assert refused(state.require_lock, "1", "me") == (not_queued or (None if owner == "me" else LockLost))
    assert refused(state.check_finishable, "1", "me") == (
        not_queued or (None if owner == "me" else NoSupport)
    )
    assert refused(state.check_abortable, "1", now) == (not_queued or (UnableToAbort if live else None))
    taken = live and owner != "me"
    assert refused(state.check_lockable, "1", "me", now) == (not_queued or (NoAccess if taken else None))


@pytest.mark.parametrize("text", ["", "0", "-3", "abc", "1.5", "1e3"])
def test_an_id_that_cannot_be_a_row_is_not_found(text: str) -> None:
    from spoolerd.errors import NotFound

    with pytest.raises(NotFound):
        int_id(text)


def test_due_is_the_latest_time_set() -> None:
    assert due(5.0, None) == 5.0 and due(5.0, 9.0) == 9.0 and due(9.0, 5.0) == 9.0

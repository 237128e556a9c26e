"""The status rows' state record (spoolerd/resource_state.py), without I/O: whatever happens, in any
order, the state is the first of offline > failing > flushing > active > online that holds, and each
change (and nothing else) is one ``status_changed`` event saying what it was and what it is."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spoolerd.events import SpoolerEvent
from spoolerd.resource_state import ATTEMPT, FLUSH, ResourceState, StatusChanges
from spoolerd.testing import FakeClock

Op = tuple[str, str]
ops = st.lists(
    st.tuples(
        st.sampled_from(["online", "offline", "fail", "recover", "begin", "end", "flush", "flushed"]),
        st.sampled_from(["mx1", "mx2"]),
    ),
    max_size=40,
)


def expected(record: ResourceState) -> str:
    for state, holds in (("offline", not record.online), ("failing", bool(record.problems)),
                         ("flushing", record.flushing > 0), ("active", record.active > 0)):  # fmt: skip
        if holds:
            return state
    return "online"


@given(ops)
def test_each_change_of_state_is_one_event_and_nothing_else_is(steps: list[Op]) -> None:
    """Seed (MAPI-NOTES, status table): every row change raises a table notification; checklist 24."""
    clock, events = FakeClock(1000.0), list[SpoolerEvent]()
    changes = StatusChanges(clock, events.append)
    record = ResourceState("transport", "smtp")
    for op, key in steps:
        before, published = record.state, len(events)
        clock.advance(1.0)
        if op in ("online", "offline"):
            changes.set_online(record, op == "online")
        elif op == "fail":
            changes.fail(record, key, f"{key} is down", f"4.4.1 {key} is down")
        elif op == "recover":
            changes.recover(record, key)
        elif op in ("begin", "flush"):
            changes.begin(record, ATTEMPT if op == "begin" else FLUSH)
        elif (record.active if op == "end" else record.flushing) > 0:  # work ends only once begun
            changes.end(record, ATTEMPT if op == "end" else FLUSH)
        assert record.state == expected(record)
        if record.state == before:
            assert len(events) == published
            continue
        (event,) = events[published:]
        assert (event["type"], event["entry_id"], event["was"], event["state"]) == (
            "status_changed", "transport:smtp", before, record.state
        )  # fmt: skip
        assert record.since == event["since"]
        assert (event["last_error"] is not None) == (record.state == "failing")
        if record.state == "failing":
            assert event["since"] == record.failing_since and event["last_error"] == record.last_error
    assert (record.failing_since is None) == (not record.problems)


def test_a_store_failing_then_online_and_work_in_between() -> None:
    """A failing row stays failing while work starts and ends under it; recovering shows the work."""
    clock, events = FakeClock(5.0), list[SpoolerEvent]()
    changes = StatusChanges(clock, events.append)
    record = ResourceState("store", "local")
    changes.fail(record, "store", "database or disk is full")
    with changes.working([record]):
        changes.recover(record, "store")
    assert [(e["was"], e["state"]) for e in events] == [
        ("online", "failing"), ("failing", "active"), ("active", "online")
    ]  # fmt: skip
    assert record.last_error == "database or disk is full" and record.entry_id == "store:local"

"""The queue census against a model queue: whatever happens, once it has read what it was not told, its
counts are the queue's. Events a store publishes are fed in as the store would, re-scans see the queue as
it was when they began, and events that arrive during a re-scan win over it."""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from spoolerd.events import QueueChanged
from spoolerd.message import (
    Message,
    MessageFlag,
    QueueEntry,
    Recipient,
    RecipientKind,
    RecipientState,
    SubmitFlag,
)
from spoolerd.metrics.census import QueueState, StoreCensus
from spoolerd.retry import DestinationCache

STORE = "local"


@dataclass(frozen=True)
class Truth:
    pending: int
    submitted: float
    attempted: bool = False
    held: bool = False

    @property
    def state(self) -> QueueState:
        return QueueState.HELD if self.held else QueueState.DEFERRED if self.attempted else QueueState.QUEUED


def _message(mid: str, t: Truth) -> Message:
    waiting = [
        Recipient(i, f"r{i}@example.net", "", "SMTP", RecipientKind.TO, attempts=int(t.attempted))
        for i in range(t.pending)
    ]
    done = Recipient(t.pending, "done@x.net", "", "SMTP", RecipientKind.TO, state=RecipientState.DELIVERED)
    recipients = (*waiting, done)
    return Message(
        mid, "1", "IPM.Note", MessageFlag.SUBMIT, SubmitFlag(0), 0, "me@example.org", "", 1, b"",
        recipients, t.submitted, t.submitted, None, t.submitted if t.attempted else None, None, False,
        True, False, None, None,
        held=t.held,
    )  # fmt: skip


def _entry(mid: str, t: Truth) -> QueueEntry:
    return QueueEntry(mid, t.submitted, t.submitted, MessageFlag.SUBMIT, SubmitFlag(0), 0, "", "", 1,
                      None, None, held=t.held)  # fmt: skip


class Queue:
    """The model: what the store holds, and the census fed as the store and the spooler would feed it."""

    def __init__(self) -> None:
        self.truth: dict[str, Truth] = {}
        self.census = StoreCensus()
        self.census.rescanned([])
        self.next_id = 0
        self.clock = 1000.0

    def event(self, reason: str, mid: str | None) -> bool:
        return self.census.changed(QueueChanged(STORE, reason, mid), self.clock)

    def apply(self, op: tuple[str, int, int, bool]) -> None:
        kind, pick, n, flag = op
        self.clock += 1
        ids = sorted(self.truth)
        mid = ids[pick % len(ids)] if ids else None
        if kind == "submit":
            mid = str(self.next_id)
            self.next_id += 1
            self.truth[mid] = Truth(n + 1, self.clock)
            self.event("submit", mid)
            if flag:  # its accepted line (a bounce copy has none)
                self.census.announced(mid, n + 1)
        elif mid is None:
            return
        elif kind in ("hold", "release"):
            self.truth[mid] = replace(self.truth[mid], held=kind == "hold")
            self.event(kind, mid)
        elif kind == "attempt" and not self.truth[mid].held:
            waiting = min(n, self.truth[mid].pending)
            if waiting:
                self.truth[mid] = replace(self.truth[mid], pending=waiting, attempted=True)
                self.event("retry", mid)
                self.census.attempted(mid, waiting)
            else:
                del self.truth[mid]
                self.event("finish", mid)
        elif kind == "abort":
            del self.truth[mid]
            self.event("abort", mid)
        elif kind == "external":  # another process submits: only a re-scan finds it
            new = str(self.next_id)
            self.next_id += 1
            self.truth[new] = Truth(n + 1, self.clock, held=flag)
            assert self.event("external", None)

    def rescan(self, during: list[tuple[str, int, int, bool]]) -> None:
        self.census.rescan_begun()
        seen = [_entry(mid, t) for mid, t in sorted(self.truth.items())]  # the scan reads first...
        for op in during:  # ...and the queue moves on before it is applied
            if op[0] != "external":
                self.apply(op)
        self.census.rescanned(seen)

    def read_unread(self) -> None:
        for mid, changes in self.census.unread():
            t = self.truth.get(mid)
            self.census.read(mid, changes, None if t is None else _message(mid, t))

    def consistent(self) -> None:
        """The totals kept as entries change are those of the entries."""
        count = self.census.count(())
        for state in QueueState:
            entries = [e for e in self.census.messages.values() if e.state() is state]
            assert count.messages[state] == len(entries)
            assert count.recipients[state] == sum(e.recipients or 0 for e in entries)

    def check(self) -> None:
        self.read_unread()
        count = self.census.count(())
        for state in QueueState:
            truths = [t for t in self.truth.values() if t.state is state]
            assert count.messages[state] == len(truths), state
            assert count.recipients[state] == sum(t.pending for t in truths), state
        assert count.oldest == min((t.submitted for t in self.truth.values()), default=None)


ops = st.tuples(
    st.sampled_from(["submit", "submit", "hold", "release", "attempt", "attempt", "abort", "external"]),
    st.integers(0, 50),
    st.integers(0, 4),
    st.booleans(),
)
steps = st.lists(st.one_of(ops, st.lists(ops, max_size=6)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_the_census_counts_what_the_queue_holds(script: list[object]) -> None:
    queue = Queue()
    external = False
    for step in script:
        if isinstance(step, list):
            queue.rescan(step)  # type: ignore[arg-type]
            external = False
        else:
            queue.apply(step)  # type: ignore[arg-type]
            external = external or step[0] == "external"  # type: ignore[index]
        queue.consistent()
    if external:
        queue.rescan([])
    queue.check()


def test_active_messages_are_counted_apart() -> None:
    queue = Queue()
    for _ in range(3):
        queue.apply(("submit", 0, 2, True))
    queue.apply(("hold", 2, 0, False))
    count = queue.census.count(["0", "2", "unknown"])  # a held one in flight stays held
    assert count.messages == {
        QueueState.QUEUED: 1, QueueState.DEFERRED: 0, QueueState.HELD: 1, QueueState.ACTIVE: 1
    }  # fmt: skip
    assert count.recipients[QueueState.ACTIVE] == 3 and count.recipients[QueueState.QUEUED] == 3


def test_a_read_begun_before_an_event_is_dropped() -> None:
    queue = Queue()
    queue.apply(("submit", 0, 3, False))  # no accepted line: to be read
    ((mid, changes),) = queue.census.unread()
    stale = _message(mid, queue.truth[mid])
    queue.apply(("attempt", 0, 1, False))  # the attempt ends while the read is on its way
    queue.census.read(mid, changes, stale)
    assert queue.census.count(()).recipients[QueueState.DEFERRED] == 1
    queue.apply(("abort", 0, 0, False))
    queue.census.read(mid, changes, stale)  # a read never brings a message back
    assert mid not in queue.census.messages


@given(st.lists(st.sampled_from(["a", "b"]) | st.sampled_from(["+a", "+b"]), max_size=30))
def test_consecutive_failures_count_since_the_last_success(script: list[str]) -> None:
    cache = DestinationCache(hold=300)
    expected: dict[str, int] = {}
    for step in script:
        if step.startswith("+"):
            cache.succeeded(step[1:])
            expected.pop(step[1:], None)
        else:
            cache.failed(step, 0.0)
            expected[step] = expected.get(step, 0) + 1
        assert cache.consecutive_failures() == expected

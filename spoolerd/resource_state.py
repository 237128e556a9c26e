"""Each resource's state in the status table (MAPI's status row: STATUS_CODE, STATUS_STRING, ENTRYID),
kept as things happen rather than guessed when asked.

``ResourceState`` is the sans-io record of one resource (the spooler, a store, a transport): taken
offline or not, how many attempts or downloads are under way, how many flushes, and what is failing
(each problem under a key of its own: a destination that is down, a store that does not answer). Its
``state`` is one of ``offline`` > ``failing`` > ``flushing`` > ``active`` > ``online``, the first that
holds. ``StatusChanges`` applies the events that already happen to a record and, when its state
changes (and only then), stamps since when, writes one log line and publishes one ``status_changed``
event: what ``spoolerctl watch`` and ``subscribe`` see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import structlog

from .events import SpoolerEvent, StatusChanged
from .store import Clock

__all__ = ["ATTEMPT", "FLUSH", "ResourceState", "ResourceType", "State", "StatusChanges", "entry_id"]

log = structlog.get_logger("spoolerd.status")

ResourceType = Literal["spooler", "store", "transport", "listener", "relay", "webhook"]
State = Literal["online", "offline", "active", "flushing", "failing"]


def entry_id(resource_type: ResourceType, name: str) -> str:
    """A row's entry id, what commands target it by: ``spooler``, ``store:local``, ``transport:smtp``."""
    return "spooler" if resource_type == "spooler" else f"{resource_type}:{name}"


@dataclass(slots=True)
class ResourceState:
    resource_type: ResourceType
    name: str
    online: bool = True  # False: an operator took it offline
    active: int = 0  # attempts (or downloads) under way
    flushing: int = 0  # flushes under way
    problems: dict[str, str] = field(default_factory=dict)  # what fails (a destination...) -> why
    last_error: str | None = None  # the latest problem's error, kept once it is over
    failing_since: float | None = None
    since: float | None = None  # when ``state`` last changed (None: not since the start)

    @property
    def entry_id(self) -> str:
        return entry_id(self.resource_type, self.name)

    @property
    def state(self) -> State:
        if not self.online:
            return "offline"
        if self.problems:
            return "failing"
        if self.flushing:
            return "flushing"
        return "active" if self.active else "online"

    @property
    def availability(self) -> Literal["available", "offline", "failure"]:
        """MAPI's STATUS_CODE: STATUS_AVAILABLE, STATUS_OFFLINE or STATUS_FAILURE."""
        state = self.state
        return "offline" if state == "offline" else "failure" if state == "failing" else "available"

    def fail(self, key: str, reason: str, error: str, now: float) -> None:
        self.problems[key] = reason
        self.last_error = error
        if self.failing_since is None:
            self.failing_since = now

    def recover(self, key: str) -> None:
        self.problems.pop(key, None)
        if not self.problems:
            self.failing_since = None


@dataclass(frozen=True, slots=True)
class _Work:
    """What ``StatusChanges.working`` counts: attempts (``active``) or flushes (``flushing``)."""

    flush: bool

    def add(self, record: ResourceState, n: int) -> None:
        if self.flush:
            record.flushing += n
        else:
            record.active += n


ATTEMPT, FLUSH = _Work(flush=False), _Work(flush=True)


class StatusChanges:
    """Applies what happens to the records, and tells of each change of state once."""

    def __init__(self, clock: Clock, publish: Callable[[SpoolerEvent], None]) -> None:
        self.clock = clock
        self.publish = publish

    def set_online(self, record: ResourceState, online: bool) -> None:
        before = record.state
        record.online = online
        self._changed(record, before)

    def fail(self, record: ResourceState, key: str, reason: str, error: str | None = None) -> None:
        """``key`` (a destination, the store itself) fails for ``reason``; ``error`` is the row's
        last error (``reason`` if not given)."""
        before = record.state
        record.fail(key, reason, error or reason, self.clock())
        self._changed(record, before)

    def recover(self, record: ResourceState, key: str) -> None:
        if key not in record.problems:
            return
        before, failing_since = record.state, record.failing_since
        record.recover(key)
        self._changed(record, before, failing_since)

    def begin(self, record: ResourceState, work: _Work = ATTEMPT) -> None:
        before = record.state
        work.add(record, 1)
        self._changed(record, before)

    def end(self, record: ResourceState, work: _Work = ATTEMPT) -> None:
        before = record.state
        work.add(record, -1)
        self._changed(record, before)

    @contextmanager
    def working(self, records: Iterable[ResourceState], work: _Work = ATTEMPT) -> Iterator[None]:
        """Each of ``records`` active (or flushing) while the block runs."""
        records = list(records)
        for record in records:
            self.begin(record, work)
        try:
            yield
        finally:
            for record in reversed(records):
                self.end(record, work)

    def _changed(self, record: ResourceState, before: State, failing_since: float | None = None) -> None:
        after = record.state
        if after == before:
            return
        failing_from = record.failing_since if after == "failing" else None
        record.since = now = self.clock() if failing_from is None else failing_from
        error = record.last_error if after == "failing" else None
        _log_change(record, before, after, now, failing_since)
        self.publish(
            StatusChanged(
                type="status_changed",
                entry_id=record.entry_id,
                resource_type=record.resource_type,
                name=record.name,
                state=after,
                was=before,
                last_error=error,
                since=now,
            )
        )


def _log_change(
    record: ResourceState, before: State, after: State, now: float, failing_since: float | None
) -> None:
    """One line: ``store failing`` (with why), ``store available again`` (after how long), else
    ``status changed``; none for work starting and ending (sending, a flush), which the outcomes' own
    lines tell (and which would cost a line per attempt, and six per ``sendmail -q`` from cron), and
    none for a transport's relay, whose change the transport logs itself as the mail log's ``relay
    down`` / ``relay up`` (two lines for one change, naming the relay two ways, before)."""
    if {before, after} <= {"online", "active", "flushing"} or record.resource_type == "relay":
        return
    fields: dict[str, object] = {record.resource_type: record.name, "entry": record.entry_id}
    if after == "failing":
        log.warning(f"{record.resource_type} failing", error=record.last_error, **fields)
    elif before == "failing":
        failing_for = None if failing_since is None else round(now - failing_since, 1)
        log.warning(f"{record.resource_type} available again", state=after, failing_for=failing_for, **fields)
    else:
        log.info("status changed", state=after, was=before, **fields)

"""The registry's record of one configured transport: the plugin, its limits, what it can do, its state.

The core asks the slot what the transport can do (``downloads``, ``flush``, ``sent_copier``...; found once
by ``abilities.detect`` when the transport was built), never the plugin object.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .abilities import Abilities, Downloading, SentCopier, TransportPreprocessor
from .rate import Rate
from .resource_state import ResourceState, StatusChanges
from .transport import Direction, Outcome, OutcomeKind, PartChange, Transport

__all__ = ["DESTINATION", "REPORTED", "TransportSlot"]

DESTINATION = "destination:"  # what its row's problem key for a destination that is down begins with
REPORTED = "reported"  # its row's problem key for a failure the transport reported of itself (``watch``)

_COUNTER = {OutcomeKind.DELIVERED: "sent", OutcomeKind.FAILED: "failed"}  # else "deferred"


@dataclass(slots=True)
class TransportSlot:
    """A configured transport with its concurrency limit, its abilities and its status."""

    transport: Transport
    limiter: asyncio.Semaphore  # the transport's concurrency
    abilities: Abilities = field(default_factory=Abilities)
    counters: dict[str, int] = field(default_factory=lambda: {"sent": 0, "deferred": 0, "failed": 0})
    last_error: str | None = None  # the latest problem a send reported
    rate: Rate | None = None  # [transports.NAME] rate: at most so many sends per period to a destination
    slowed: dict[str, tuple[int, float]] = field(default_factory=dict)  # destination -> (messages, until)
    resource: ResourceState = field(init=False)  # its status row's state (spoolerd/resource_state.py)
    parts: dict[str, ResourceState] = field(default_factory=dict)  # its relays' rows, as it reported them

    def __post_init__(self) -> None:
        self.resource = ResourceState("transport", self.transport.name)

    @property
    def name(self) -> str:
        return self.transport.name

    @property
    def online(self) -> bool:
        return self.resource.online

    @property
    def down(self) -> Mapping[str, str]:
        """Its destinations that are down -> why (of its row's problems, those a destination has)."""
        problems = self.resource.problems
        return {
            key.removeprefix(DESTINATION): why for key, why in problems.items() if key.startswith(DESTINATION)
        }

    @property
    def address_types(self) -> frozenset[str] | None:
        return self.transport.address_types

    @property
    def preprocessors(self) -> Sequence[TransportPreprocessor]:
        return self.abilities.preprocessors

    @property
    def downloader(self) -> Downloading | None:
        """What the spooler runs a download loop on; None: nothing to download."""
        return self.abilities.downloader

    @property
    def downloads(self) -> bool:
        return self.abilities.downloader is not None

    @property
    def flush(self) -> Callable[[Direction], Awaitable[None]] | None:
        return self.abilities.flush

    @property
    def sent_copier(self) -> SentCopier | None:
        return self.abilities.sent_copier

    @property
    def destination_concurrency(self) -> int | None:
        return self.abilities.destination_concurrency

    def rate_status(self, now: float) -> dict[str, Any] | None:
        """The status row's ``rate``: the configured one, and each destination's halved rate until when."""
        if self.rate is None:
            return None
        slowed = {d: {"messages": m, "until": u} for d, (m, u) in self.slowed.items() if u > now}
        return {"messages": self.rate.messages, "per": self.rate.per, "slowed": slowed}

    def own_status(self) -> Mapping[str, Any]:
        """The transport's own part of its status row (empty if it reports none)."""
        return {} if self.abilities.status is None else self.abilities.status()

    def watch(self, changes: StatusChanges) -> None:
        """Hand a ``Watched`` transport where to report its parts' changes: each one a change of the
        part's row (``relay:TRANSPORT/PART``) through ``changes``, one event and one log line."""
        if self.abilities.watch is not None:
            self.abilities.watch(lambda change: self._part_changed(changes, change))

    def _part_changed(self, changes: StatusChanges, change: PartChange) -> None:
        record = self.resource if change.part is None else self._part(change.part)  # None: itself
        if change.error is None:
            changes.recover(record, REPORTED)
        else:
            changes.fail(record, REPORTED, change.error)

    def _part(self, part: str) -> ResourceState:
        record = self.parts.get(part)
        if record is None:
            record = self.parts[part] = ResourceState("relay", f"{self.name}/{part}")
        return record

    def account(self, outcomes: Sequence[Outcome]) -> None:
        """Count what one send did, and keep the latest problem for the status row (a deferral without
        an attempt, a relay's rate say, is neither)."""
        for outcome in outcomes:
            if outcome.kind is OutcomeKind.NOT_ME or not outcome.attempted:
                continue
            self.counters[_COUNTER.get(outcome.kind, "deferred")] += 1
            if outcome.kind is not OutcomeKind.DELIVERED:
                code = f"{outcome.code} " if outcome.code else ""
                self.last_error = f"{code}{outcome.status or ''} {outcome.diagnostic}".strip()

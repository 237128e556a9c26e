"""The registry's record of one configured transport: the plugin, its limits, what it can do, its state.

The core asks the slot what the transport can do (``downloads``, ``flush``, ``sent_copier``...; found once
by ``abilities.detect`` when the transport was built), never the plugin object.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .abilities import Abilities, Downloading, SentCopier, TransportPreprocessor
from .transport import Direction, Outcome, OutcomeKind, Transport

__all__ = ["TransportSlot"]

_COUNTER = {OutcomeKind.DELIVERED: "sent", OutcomeKind.FAILED: "failed"}  # else "deferred"


@dataclass(slots=True)
class TransportSlot:
    """A configured transport with its concurrency limit, its abilities and its status."""

    transport: Transport
    limiter: asyncio.Semaphore  # the transport's concurrency
    abilities: Abilities = field(default_factory=Abilities)
    online: bool = True
    counters: dict[str, int] = field(default_factory=lambda: {"sent": 0, "deferred": 0, "failed": 0})
    last_error: str | None = None
    since: float = 0.0  # when ``online`` or ``state`` last changed
    down: dict[str, str] = field(default_factory=dict)  # its destinations that are down -> why

    @property
    def name(self) -> str:
        return self.transport.name

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

    def own_status(self) -> Mapping[str, Any]:
        """The transport's own part of its status row (empty if it reports none)."""
        return {} if self.abilities.status is None else self.abilities.status()

    @property
    def state(self) -> Literal["ok", "failing"]:
        """``failing`` while one of its destinations is down (no answer, login refused, TLS failed)."""
        return "failing" if self.down else "ok"

    @property
    def availability(self) -> str:
        """The status row's first flag: offline, failure or available."""
        return "offline" if not self.online else "failure" if self.down else "available"

    def account(self, outcomes: Sequence[Outcome]) -> None:
        """Count what one send did, and keep the latest problem for the status row."""
        for outcome in outcomes:
            if outcome.kind is OutcomeKind.NOT_ME:
                continue
            self.counters[_COUNTER.get(outcome.kind, "deferred")] += 1
            if outcome.kind is not OutcomeKind.DELIVERED:
                code = f"{outcome.code} " if outcome.code else ""
                self.last_error = f"{code}{outcome.status or ''} {outcome.diagnostic}".strip()

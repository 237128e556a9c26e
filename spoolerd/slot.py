"""The transport registry's record of one configured transport: its limit, its preprocessors, its state."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from .preprocess import Preprocessor
from .transport import Outcome, OutcomeKind, Transport

__all__ = ["TransportSlot"]


@dataclass(slots=True)
class TransportSlot:
    """A configured transport with its concurrency limit and the preprocessors it registered."""

    transport: Transport
    limiter: asyncio.Semaphore  # the transport's concurrency
    preprocessors: Sequence[Preprocessor] = ()
    online: bool = True
    counters: dict[str, int] = field(default_factory=lambda: {"sent": 0, "deferred": 0, "failed": 0})
    last_error: str | None = None
    since: float = 0.0  # when ``online`` or ``state`` last changed
    down: dict[str, str] = field(default_factory=dict)  # its destinations that are down -> why

    @property
    def name(self) -> str:
        return self.transport.name

    @property
    def state(self) -> str:
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
            key = {OutcomeKind.DELIVERED: "sent", OutcomeKind.FAILED: "failed"}.get(outcome.kind, "deferred")
            self.counters[key] += 1
            if outcome.kind is not OutcomeKind.DELIVERED:
                code = f"{outcome.code} " if outcome.code else ""
                self.last_error = f"{code}{outcome.status or ''} {outcome.diagnostic}".strip()

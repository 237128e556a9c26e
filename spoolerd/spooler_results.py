"""What the spooler's attempts came to: its running counts, a flush's answer, and the delivery events an
attempt's end is told to subscribers as (``spoolerctl watch``, the metrics)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from .delivery import AttemptResult, RecipientResult
from .events import DeliveryEvent, RecipientDetail

__all__ = ["Counters", "FlushDeferral", "FlushResult", "delivery_events"]


@dataclass(slots=True)
class Counters:
    delivered: int = 0
    deferred: int = 0
    failed: int = 0
    received: int = 0


@dataclass(frozen=True, slots=True)
class FlushDeferral:
    """A recipient a flush left deferred, and why."""

    store: str
    message_id: str
    recipient: RecipientResult


@dataclass(slots=True)
class FlushResult:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    messages: int = 0
    deferrals: list[FlushDeferral] = field(default_factory=list)

    def add(self, store: str, message_id: str, attempt: AttemptResult | None) -> None:
        if attempt is None:
            return
        self.messages += 1
        self.sent += attempt.delivered
        self.deferred += attempt.deferred
        self.failed += attempt.failed
        self.deferrals += [FlushDeferral(store, message_id, d) for d in attempt.deferrals]


def delivery_events(
    store: str, message_id: str, result: AttemptResult, clock: Callable[[], float]
) -> Iterator[DeliveryEvent]:
    """One event per state some of the attempt's recipients reached (delivered, deferred, failed)."""
    counts: tuple[tuple[Literal["delivered", "deferred", "failed"], int], ...] = (
        ("delivered", result.delivered),
        ("deferred", result.deferred),
        ("failed", result.failed),
    )
    for kind, count in counts:
        if count:
            yield {
                "type": kind,
                "store": store,
                "id": message_id,
                "recipients": count,
                "time": clock(),
                "details": _details(result, kind),
            }


def _details(result: AttemptResult, state: str) -> list[RecipientDetail]:
    """Per recipient in ``state``: what ``spoolerctl watch`` prints (address, reply, next try)."""
    return [
        {
            "recipient": r.address,
            "transport": u.transport,
            "code": u.code,
            "status": u.status,
            "reason": u.text,
            "next_attempt": u.next_attempt,
        }
        for r in result.recipients
        if (u := r.update).state == state
    ]

"""What every stage of a delivery attempt is told by the configuration (``[spooler]``, ``[retry]``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..retry import RetryPolicy
from ..routing import SenderRoutes

__all__ = ["DeliverySettings"]


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    lease: float = 300.0
    send_timeout: float = 600.0
    destination_concurrency: int = 8
    destination_hold: float = 300.0
    reporting_mta: str = "localhost"
    report_original_limit: int = 50_000
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    delay_warning_after: float | None = None  # seconds queued before the sender is told (None: never)
    lists: Mapping[str, Sequence[str]] = field(default_factory=dict)
    bounce_copy_to: Sequence[str] = ()  # get a copy of every NDR ([addresses] bounce_copy_to, aliased)
    sender_routes: SenderRoutes = field(default_factory=SenderRoutes)  # [sender_routes]

"""The transport contract (IXPLogon as spoolerd sees it) and per-recipient outcomes.

A transport is a class found through the ``spoolerd.transports`` entry points, built from its own
pydantic ``Settings`` model. It serves the recipient address types in ``address_types`` (``None``: any,
so install it last; empty: never routed, a preprocessor-only transport) and answers ``send`` with exactly
one ``Outcome`` per recipient it was given. ``NOT_ME`` hands a recipient to the next transport that
serves its type. A transport never raises for a delivery problem: it reports it as an outcome, and the
spooler treats an exception as a temporary failure of every recipient in that call.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from .message import InboundMessage, Message, Recipient, StateChange
from .store import Clock, MessageStore

__all__ = [
    "TRANSPORT_METHODS",
    "Direction",
    "Inbound",
    "Outcome",
    "OutcomeKind",
    "PartChange",
    "Transport",
    "TransportContext",
    "TransportProvider",
    "Tried",
]


class OutcomeKind(enum.StrEnum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    FAILED = "failed"
    NOT_ME = "not_me"


class Direction(enum.StrEnum):
    """FlushQueues' directions: upload is outgoing mail, download is incoming mail."""

    UPLOAD = "upload"
    DOWNLOAD = "download"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one recipient in one ``send``: SMTP-style code, enhanced status, diagnostic."""

    kind: OutcomeKind
    code: int | None = None
    status: str | None = None
    diagnostic: str = ""
    retry_after: float | None = None  # DEFERRED: the transport's own hint, in seconds
    attempted: bool = True  # False: the spooler deferred it without trying (dead destination, offline)
    relay: str | None = None  # the peer that answered (host:port), when the transport talked to one

    @classmethod
    def delivered(cls, diagnostic: str = "", code: int | None = 250, status: str = "2.0.0") -> Outcome:
        return cls(OutcomeKind.DELIVERED, code, status, diagnostic)

    @classmethod
    def deferred(
        cls,
        diagnostic: str,
        code: int | None = None,
        status: str = "4.0.0",
        retry_after: float | None = None,
    ) -> Outcome:
        return cls(OutcomeKind.DEFERRED, code, status, diagnostic, retry_after)

    @classmethod
    def failed(cls, diagnostic: str, code: int | None = 550, status: str = "5.0.0") -> Outcome:
        return cls(OutcomeKind.FAILED, code, status, diagnostic)

    @classmethod
    def not_me(cls) -> Outcome:
        return cls(OutcomeKind.NOT_ME)


@dataclass(frozen=True, slots=True)
class Tried:
    """What one recipient got in a delivery attempt, and from which transport (the one it waits for,
    if it was deferred without a try; ``None`` when no transport serves it)."""

    transport: str | None
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class PartChange:
    """A part of a transport (a relay of several), or the transport itself (``part`` None: a download
    loop that cannot log in, say), stopped working (``error``: why) or works again (``error`` None): what
    a ``Watched`` transport reports (spoolerd/abilities.py), once per change."""

    part: str | None  # the part's own name, e.g. a relay's ``host:port``; None: the whole transport
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TransportContext:
    """What the daemon tells a transport besides its own settings."""

    name: str  # the transport's name in the config ([transports.NAME])
    stores: Mapping[str, MessageStore] = field(default_factory=dict)
    store_addresses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # store -> owned addresses
    clock: Clock = field(default=time.time)
    default_store: str = ""  # [spooler] default_store: where a downloading transport files by default
    destination_hold: float = 300.0  # [spooler.retry] destination_hold: how long a failed relay is left alone


@runtime_checkable
class Transport(Protocol):
    """A transport provider's logon: sends outgoing recipients, optionally downloads incoming mail."""

    name: str
    address_types: frozenset[str] | None

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        """Deliver ``message`` to ``recipients``; one outcome per recipient, in the same order."""

    def destination(self, recipient: Recipient) -> str:
        """The key under which failures are cached (a relay, a domain, a store), so a dead destination
        is not tried again by every queued message."""


# What a transport may add (check, receive, flush, preprocessors, status, sent copies, its own
# destination limit) is in spoolerd/abilities.py: each one a Protocol, detected once when it is built.


class Inbound(Protocol):
    """One downloaded message: the spooler commits it, with ``state`` (what the transport remembers of
    it, e.g. its UID; None: nothing) in the same transaction, then calls ``acknowledge`` (e.g. mark
    \\Seen)."""

    store: str
    message: InboundMessage
    state: StateChange | None

    async def acknowledge(self) -> None: ...


TRANSPORT_METHODS: tuple[str, ...] = ("start", "stop", "send", "destination")


class TransportProvider(Protocol):
    Settings: ClassVar[type[BaseModel]]

    def __call__(self, settings: Any, context: TransportContext) -> Transport: ...

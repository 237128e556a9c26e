"""What every control command is built from: the error it raises, what it knows of its client, its
arguments' base models, and the lookups of a store and a transport by the name a client gave."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from pydantic import BaseModel, ConfigDict

from ..errors import SpoolerError
from ..host import Host
from ..slot import TransportSlot
from ..store import MessageStore
from .results import ControlEvent

__all__ = ["Args", "CommandError", "Connection", "IdArgs", "StoreArgs", "named_slot", "named_store"]


class CommandError(SpoolerError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Connection:
    """What a command may know of the client that sent it."""

    uid: int
    send_event: Callable[[ControlEvent], Awaitable[None]]
    closed: anyio.Event
    body: bytes | None = None  # raw bytes that followed the request line (``submit``'s message)
    admin: bool = False  # may use every command, not only ``access.USER_COMMANDS``


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StoreArgs(Args):
    store: str | None = None


def named_store(daemon: Host, name: str | None) -> tuple[str, MessageStore]:
    chosen = name or daemon.default_store
    store = daemon.stores.get(chosen)
    if store is None:
        raise CommandError("unknown_store", f"no store named {chosen!r}")
    return chosen, store


def named_slot(daemon: Host, name: str) -> TransportSlot:
    slot = daemon.spooler.dispatcher.slot(name)
    if slot is None:
        raise CommandError("unknown_transport", f"no transport named {name!r}")
    return slot


class IdArgs(StoreArgs):
    id: str

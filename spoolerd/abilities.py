"""What a transport may do besides sending: each optional ability is one small Protocol, here.

A transport implements ``Transport`` (spoolerd/transport.py) and any of the abilities below. The registry
``detect``\\ s them once, when it builds the transport, into an ``Abilities`` record that the transport's
slot (spoolerd/slot.py) keeps; the core asks the slot (``slot.flush``, ``slot.downloads``,
``slot.sent_copier``...), never the plugin object. An ability implemented by halves is a start-up error
naming the plugin and what is missing (``spoolerd run`` and ``check-config`` exit 78), rather than an
AttributeError in the middle of a delivery or an ability silently ignored:

- ``Checking``: ``check()``; refused if not callable.
- ``Downloading``: ``downloads: bool`` and ``receive()``; refused with one and not the other.
- ``Flushing``: ``async flush(direction)``; refused if not a coroutine function.
- ``Preprocessing``: ``preprocessors()``, each item a callable with a ``name`` (``TypedPreprocessor``: and
  its own ``address_types``); refused otherwise.
- ``Reporting``: ``status()``, its part of the status row; refused if not callable.
- ``Watched``: ``watch(changed)``, called once when the transport enters the spooler with where to
  report each of its parts (a relay of several), or itself, going failing or back (``PartChange``):
  a part is a row of the status table, and each change is a ``status_changed`` event without the core
  asking; refused if not callable.
- ``FilingSentCopies``: ``sent_copies: bool`` and ``async file_sent(message, delivered_by)``; refused with
  one and not the other. ``OwingSentCopies`` adds ``async owe_sent(store, message, delivered_by)``.
- ``DestinationLimited``: ``destination_concurrency``, None or a positive int.
- ``RateGated``: ``use_rate_gate(gate)``, called once with the spooler's ``RateGate`` (budgets of the
  transport's own, e.g. one per relay, kept in the store like ``rate``'s); refused if not callable.

Stores have one optional part here, ``check`` (``checker``); their other optional abilities are checked
Protocols beside the contract they extend: ``QueueCounter`` (spoolerd/store.py, for the metrics) and
``EventOutbox`` (spoolerd/outbox.py, which a daemon with ``[webhooks]`` requires of every queuing store).
A plugin's members are read by name in one place, ``contract.member``, and only here and in the
registry's load-time checks (spoolerd/contract.py).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .contract import MISSING, member
from .errors import PluginError
from .message import Message
from .preprocess import Preprocessor
from .rate import Rate
from .store import MessageStore
from .transport import Direction, Inbound, PartChange

__all__ = [
    "Abilities",
    "Checking",
    "DestinationLimited",
    "Downloading",
    "FilingSentCopies",
    "Flushing",
    "OwingSentCopies",
    "Preprocessing",
    "RateGate",
    "RateGated",
    "Reporting",
    "SentCopier",
    "TransportPreprocessor",
    "TypedPreprocessor",
    "Watched",
    "checker",
    "detect",
]


class Checking(Protocol):
    def check(self) -> None:
        """What ``start`` needs is there (files readable, secrets resolvable); raise ConfigError with
        ``key: problem`` lines. Called on the built object by check-config, run and a reload, before
        start. Stores may have it too."""


class Downloading(Protocol):
    downloads: bool  # False: it has ``receive`` but nothing to download as configured

    def receive(self) -> AsyncIterator[Inbound]:
        """Download: messages to file into a store, for the transport's life (the spooler runs it). One
        without ``flush`` hands over what is waiting and returns: a flush runs it again (seed 000)."""


class Flushing(Protocol):
    async def flush(self, direction: Direction) -> None:
        """FlushQueues. DOWNLOAD: fetch what the server has now and return once the spooler has
        committed and acknowledged all of it, so a synchronous flush can report how many arrived."""


class Preprocessing(Protocol):
    def preprocessors(self) -> Sequence[Preprocessor]:
        """RegisterPreprocessor: each runs on messages this transport handles, or, if it has its own
        ``address_types`` (``TypedPreprocessor``), on messages with a recipient of one of them."""


class TypedPreprocessor(Preprocessor, Protocol):
    address_types: frozenset[str] | None


class Reporting(Protocol):
    def status(self) -> Mapping[str, Any]:
        """Its part of the status row: ``status`` flags added to the spooler's (inbound_active,
        flushing, failure), ``last_error``, ``counters``, and keys of its own."""


class Watched(Protocol):
    def watch(self, changed: Callable[[PartChange], None]) -> None:
        """Keep ``changed`` and call it (from the event loop, without blocking) each time one of its
        parts (a relay), or itself, stops working or works again; a later call replaces it."""


class FilingSentCopies(Protocol):
    sent_copies: bool  # False: told of nothing (as configured)

    async def file_sent(self, message: Message, delivered_by: Collection[str]) -> None:
        """Told of each message that has ended with recipients delivered (by the transports named), to
        file a copy of sent mail (e.g. IMAP APPEND to Sent); its errors are its own."""


class OwingSentCopies(FilingSentCopies, Protocol):
    async def owe_sent(self, store: MessageStore, message: Message, delivered_by: Collection[str]) -> None:
        """Told before the message is finished: commit the copy owed in ``store``, so a crash between
        the finish and ``file_sent`` loses no copy."""


class DestinationLimited(Protocol):
    destination_concurrency: int | None  # sends at once per destination, instead of the spooler's


class RateGate(Protocol):
    async def admit(self, key: str, rate: Rate) -> float | None:
        """May one message go to the transport's ``key`` (a relay, say) under ``rate`` now? None: yes,
        and the send is recorded in the store before this returns; else the time (the spooler's clock)
        its window frees. Keys are the transport's own; the gate prefixes the transport's name."""


class RateGated(Protocol):
    def use_rate_gate(self, gate: RateGate) -> None:
        """Given the spooler's gate once, before the first send (and again to a reloaded transport)."""


@dataclass(frozen=True, slots=True)
class TransportPreprocessor:
    """A transport's preprocessor, with the address types it declared itself (``own_types``) or not."""

    run: Preprocessor
    own_types: bool = False
    address_types: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class SentCopier:
    file_sent: Callable[[Message, Collection[str]], Awaitable[None]]
    owe_sent: Callable[[MessageStore, Message, Collection[str]], Awaitable[None]] | None = None


@dataclass(frozen=True, slots=True)
class Abilities:
    """What one transport can do besides ``send``, found once by ``detect``."""

    check: Callable[[], None] | None = None
    downloader: Downloading | None = None  # None: no download loop (no receive, or downloads False)
    flush: Callable[[Direction], Awaitable[None]] | None = None
    preprocessors: tuple[TransportPreprocessor, ...] = ()
    status: Callable[[], Mapping[str, Any]] | None = None
    sent_copier: SentCopier | None = None  # None: no sent copies, or sent_copies False
    destination_concurrency: int | None = None
    use_rate_gate: Callable[[RateGate], None] | None = None
    watch: Callable[[Callable[[PartChange], None]], None] | None = None  # Watched


def _refuse(plugin: str, problem: str) -> PluginError:
    return PluginError(f"{plugin}: {problem}")


def _async_method(plugin: object, name: str, what: str, describe: str) -> Any:
    method = member(plugin, name)
    if method is MISSING:
        return None
    if not inspect.iscoroutinefunction(method):
        raise _refuse(describe, f"{name} must be an async method ({what})")
    return method


def _method(plugin: object, name: str, what: str, describe: str) -> Any:
    method = member(plugin, name)
    if method is MISSING:
        return None
    if not callable(method):
        raise _refuse(describe, f"{name} must be a method ({what})")
    return method


def checker(plugin: object, describe: str) -> Callable[[], None] | None:
    """A store's or transport's ``check``, if it has one."""
    return _method(plugin, "check", "Checking", describe)  # type: ignore[no-any-return]


def _downloader(transport: object, describe: str) -> Downloading | None:
    receive, flag = member(transport, "receive"), member(transport, "downloads")
    if receive is MISSING and flag is MISSING:
        return None
    if receive is MISSING or not callable(receive):
        raise _refuse(describe, "downloads is set but receive() is missing (Downloading)")
    if flag is MISSING:
        raise _refuse(describe, "receive() without the downloads flag (Downloading: downloads: bool)")
    if not isinstance(flag, bool):
        raise _refuse(describe, f"downloads must be a bool, not {type(flag).__name__}")
    return transport if flag else None  # type: ignore[return-value]


def _preprocessors(transport: object, describe: str) -> tuple[TransportPreprocessor, ...]:
    own = member(transport, "preprocessors")
    if own is MISSING:
        return ()
    if not callable(own):
        raise _refuse(describe, "preprocessors must be a method (Preprocessing)")
    found = []
    for pre in own():
        if not callable(pre) or not isinstance(member(pre, "name"), str):
            raise _refuse(
                describe, f"preprocessors() gave {pre!r}, not a preprocessor (a callable with a name)"
            )
        types = member(pre, "address_types")
        if types is MISSING:
            found.append(TransportPreprocessor(pre))
            continue
        if not _address_types(types):
            raise _refuse(
                describe, f"preprocessor {pre.name}: address_types must be a frozenset of str or None"
            )
        found.append(TransportPreprocessor(pre, True, types))
    return tuple(found)


def _sent_copier(transport: object, describe: str) -> SentCopier | None:
    flag = member(transport, "sent_copies")
    file_sent = _async_method(transport, "file_sent", "FilingSentCopies", describe)
    owe_sent = _async_method(transport, "owe_sent", "OwingSentCopies", describe)
    if flag is MISSING:
        if file_sent is not None or owe_sent is not None:
            raise _refuse(describe, "file_sent() without the sent_copies flag (FilingSentCopies)")
        return None
    if not isinstance(flag, bool):
        raise _refuse(describe, f"sent_copies must be a bool, not {type(flag).__name__}")
    if file_sent is None:
        raise _refuse(describe, "sent_copies is set but file_sent() is missing (FilingSentCopies)")
    return SentCopier(file_sent, owe_sent) if flag else None


def _address_types(types: object) -> bool:
    return types is None or (isinstance(types, frozenset) and all(isinstance(t, str) for t in types))


def detect(transport: object, describe: str) -> Abilities:
    """Every optional ability of a built transport; PluginError, naming ``describe`` (the plugin) and
    what is missing, for one implemented by halves. Also checks ``address_types``."""
    if not _address_types(member(transport, "address_types")):
        raise _refuse(describe, "address_types must be a frozenset of str or None")
    limit = member(transport, "destination_concurrency")
    if limit is MISSING:
        limit = None
    elif limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise _refuse(describe, f"destination_concurrency must be None or a positive int, not {limit!r}")
    return Abilities(
        check=checker(transport, describe),
        downloader=_downloader(transport, describe),
        flush=_async_method(transport, "flush", "Flushing", describe),
        preprocessors=_preprocessors(transport, describe),
        status=_method(transport, "status", "Reporting", describe),
        sent_copier=_sent_copier(transport, describe),
        destination_concurrency=limit,
        use_rate_gate=_method(transport, "use_rate_gate", "RateGated", describe),
        watch=_method(transport, "watch", "Watched", describe),
    )

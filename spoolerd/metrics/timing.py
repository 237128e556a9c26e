"""Store operations and their latency: each store of a daemon serving ``[metrics]`` is wrapped in a
``TimedStore``, which times every call of the store contract (the async methods of ``MessageStore``:
``submit``, ``lock``, ``finish``, ``deliver``, ``open``…, and ``claim`` of a store that claims) as the
caller sees it, group-commit waits included, and hands everything else (``outgoing_queue``,
``subscribe``, ``name``, a provider's own extras) to the store untouched. The wrapping is delegation,
not probing: nothing asks a store what it can do. Without ``[metrics]`` the stores are not wrapped and
cost nothing more.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from functools import partial
from typing import Any, cast

from prometheus_client import Histogram

from ..contract import member
from ..store import STORE_METHODS, Claiming, MessageStore

__all__ = ["OPERATIONS", "TimedStore", "store_histogram", "timed_stores"]

# the contract's async calls; start and stop run once and are not operations on mail
OPERATIONS = tuple(
    name
    for name in STORE_METHODS
    if inspect.iscoroutinefunction(getattr(MessageStore, name)) and name not in ("start", "stop")
)
# a local SQLite commit is a millisecond or two; a remote database, tens; a full disk, seconds
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


def store_histogram() -> Histogram:
    """The histogram, not yet in a registry (the metrics face registers it when it starts)."""
    return Histogram(
        "spoolerd_store_operation_duration_seconds",
        "Seconds a store operation took, as the daemon waited for it (group-commit waits included)",
        ["store", "operation"],
        buckets=BUCKETS,
        registry=None,
    )


class TimedStore:
    """A store whose contract calls are timed into ``histogram``."""

    def __init__(self, store: MessageStore, histogram: Histogram) -> None:
        self.timed_store = store
        self._histogram = histogram
        self._observe: dict[str, Callable[[float], None]] = {}  # by operation, made at its first call
        # the contract's calls, bound once as the store is wrapped (the registry checked them at load)
        self._calls: dict[str, Callable[..., Awaitable[Any]]] = {op: member(store, op) for op in OPERATIONS}
        if isinstance(store, Claiming):  # an optional ability, timed where the store has it (and only there)
            self._calls["claim"] = member(store, "claim")
            self.claim = partial(_CLAIM, self)

    def observe(self, operation: str, seconds: float) -> None:
        observe = self._observe.get(operation)
        if observe is None:
            child = self._histogram.labels(self.timed_store.name, operation)
            observe = self._observe[operation] = child.observe
        observe(seconds)

    def __getattr__(self, name: str) -> Any:
        # what is not timed (name, outgoing_queue, subscribe, a provider's extras): the store's own, as
        # if unwrapped. A proxy's delegation, not a probe: what the core may ask is the store contract.
        return getattr(self.timed_store, name)


def _timed(operation: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def call(self: TimedStore, *args: Any, **kwargs: Any) -> Any:
        began = time.monotonic()
        try:
            return await self._calls[operation](*args, **kwargs)
        finally:
            self.observe(operation, time.monotonic() - began)

    call.__name__ = call.__qualname__ = operation
    return call


for _operation in OPERATIONS:
    setattr(TimedStore, _operation, _timed(_operation))
_CLAIM = _timed("claim")  # bound per store that claims (``Claiming``): the others must not seem to


def timed_stores(stores: Mapping[str, MessageStore], histogram: Histogram) -> dict[str, MessageStore]:
    """Each store wrapped. An operation's series appear at its first call: of 29 operations, a daemon
    uses about a dozen, and each series is 16 samples."""
    return {name: cast(MessageStore, TimedStore(store, histogram)) for name, store in stores.items()}

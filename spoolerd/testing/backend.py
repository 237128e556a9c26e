"""What the conformance suite needs from a provider (``StoreBackend``) and the tools its tests use.

A backend makes a fresh, empty store's options for one test and drops it afterwards, and checks the
backing storage's own consistency after a writer was killed. ``StoreFactory`` opens stores over those
options (as often as a test likes, or in a child process) and stops them at the end of the test.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from spoolerd.plugins import PluginRegistry
from spoolerd.store import MessageStore, StoreContext

__all__ = ["FakeClock", "StoreBackend", "StoreFactory"]


class FakeClock:
    """A clock tests move by hand, so lease and retry timing needs no real waiting."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class StoreBackend(Protocol):
    """One store provider as the conformance suite sees it."""

    provider: str  # its name in the ``spoolerd.stores`` entry point group

    async def create(self, location: Path) -> dict[str, Any]:
        """The ``[stores.NAME]`` options of a fresh, empty store (``location`` is a temporary directory
        the test owns: also the store's state directory)."""

    async def drop(self, options: dict[str, Any]) -> None:
        """Forget the store made by ``create`` (after every instance of it has stopped)."""

    async def integrity(self, options: dict[str, Any]) -> str:
        """The backing storage's own consistency check: ``"ok"``, or what is wrong."""


class StoreFactory:
    """Opens (and remembers to stop) stores of one provider over one location."""

    def __init__(
        self,
        backend: StoreBackend,
        location: Path,
        options: dict[str, Any],
        clock: FakeClock,
        registry: PluginRegistry | None = None,
    ) -> None:
        self.backend = backend
        self.provider = backend.provider
        self.location = location
        self.options = options
        self.registry = registry or PluginRegistry()
        self.clock = clock
        self.opened: list[MessageStore] = []

    async def open(self, name: str = "local", clock: Callable[[], float] | None = None) -> MessageStore:
        context = StoreContext(name, self.location, clock or self.clock)
        store = self.registry.open_store(self.provider, self.options, context)
        await store.start()
        self.opened.append(store)
        return store

    async def close(self, store: MessageStore) -> None:
        self.opened.remove(store)
        await store.stop()

    async def close_all(self) -> None:
        for store in list(self.opened):
            await self.close(store)

    async def integrity(self) -> str:
        return await self.backend.integrity(self.options)

    def child_command(self, *args: str) -> list[str]:
        """argv for a separate process that opens the same store and runs a helper command
        (``spoolerd.testing.store_child``)."""
        spec = json.dumps(
            {"provider": self.provider, "options": self.options, "location": str(self.location)}
        )
        return [sys.executable, "-m", "spoolerd.testing.store_child", spec, *args]

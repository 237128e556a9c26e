"""Fixtures shared by every test: an injectable clock and store providers loaded through the registry.

The conformance suite runs unchanged against every provider listed in ``STORE_PROVIDERS``; a provider
joins by adding how to configure it against a fresh temporary location.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from spoolerd.plugins import PluginRegistry
from spoolerd.store import MessageStore, StoreContext

HELPERS = Path(__file__).parent / "helpers"


class FakeClock:
    """A clock tests move by hand, so lease and retry timing needs no real waiting."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def sqlite_options(location: Path) -> dict[str, Any]:
    return {"path": str(location / "store.db")}


# provider name -> how to configure a fresh instance under a temporary directory
STORE_PROVIDERS: dict[str, Callable[[Path], dict[str, Any]]] = {"sqlite": sqlite_options}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def registry() -> PluginRegistry:
    return PluginRegistry()


class StoreFactory:
    """Opens (and remembers to stop) stores of one provider over one location."""

    def __init__(self, provider: str, location: Path, registry: PluginRegistry, clock: FakeClock) -> None:
        self.provider = provider
        self.location = location
        self.options = STORE_PROVIDERS[provider](location)
        self.registry = registry
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

    def child_command(self, *args: str) -> list[str]:
        """argv for a separate process that opens the same store and runs a helper command."""
        spec = json.dumps(
            {"provider": self.provider, "options": self.options, "location": str(self.location)}
        )
        return [sys.executable, str(HELPERS / "store_child.py"), spec, *args]


@pytest.fixture(params=sorted(STORE_PROVIDERS))
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path, registry: PluginRegistry, clock: FakeClock
) -> AsyncIterator[StoreFactory]:
    factory = StoreFactory(request.param, tmp_path, registry, clock)
    yield factory
    for store in list(factory.opened):
        await factory.close(store)


@pytest.fixture
async def store(store_factory: StoreFactory) -> MessageStore:
    return await store_factory.open()


async def reap(proc: asyncio.subprocess.Process) -> None:
    """Kill a daemon a test started if it is still running (after a failed assertion, say)."""
    if proc.returncode is None:
        proc.kill()
        await proc.wait()

"""The conformance suite's pytest fixtures: ``clock``, ``store_factory`` and ``store``.

They stand on one fixture the user provides, ``store_backend`` (a ``StoreBackend``), so the same tests
run against any provider; load this module with ``pytest_plugins = ["spoolerd.testing.plugin"]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from spoolerd.plugins import PluginRegistry
from spoolerd.store import MessageStore

from .backend import FakeClock, StoreBackend, StoreFactory

__all__ = ["clock", "store", "store_factory"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def _store_registry() -> PluginRegistry:
    return PluginRegistry()


@pytest.fixture
async def store_factory(
    store_backend: StoreBackend, tmp_path: Path, clock: FakeClock, _store_registry: PluginRegistry
) -> AsyncIterator[StoreFactory]:
    options = await store_backend.create(tmp_path)
    factory = StoreFactory(store_backend, tmp_path, options, clock, _store_registry)
    try:
        yield factory
    finally:
        await factory.close_all()
        await store_backend.drop(options)


@pytest.fixture
async def store(store_factory: StoreFactory) -> MessageStore:
    return await store_factory.open()

"""The conformance suite's postgres leg is network code: it runs on asyncio's loop and on uvloop's (which
the daemon uses); the embedded sqlite leg on asyncio's only (its uvloop twins are deselected)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    import uvloop

    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def sqlite_on_uvloop(item: pytest.Item) -> bool:
        callspec = getattr(item, "callspec", None)
        return (
            callspec is not None
            and callspec.params.get("store_backend") == "sqlite"
            and "uvloop" in callspec.id.split("-")
        )

    dropped = [item for item in items if sqlite_on_uvloop(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not sqlite_on_uvloop(item)]

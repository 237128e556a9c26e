"""The PostgreSQL store's own tests are network code: each runs on asyncio's loop and on uvloop's, except
where the code under test is daemon processes (a module with ``DAEMON_PROCESSES = True``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    import uvloop

    if getattr(item.module, "DAEMON_PROCESSES", False):
        # the daemons under test are processes of their own, on uvloop; the test's loop only carries
        # a client of the store, so running it twice would test nothing new
        return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}

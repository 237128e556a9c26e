"""The SQLite writer runs on the event loop: its tests run on asyncio's loop and on uvloop's (the
daemon's)."""

from tests.conformance.conftest import pytest_asyncio_loop_factories

__all__ = ["pytest_asyncio_loop_factories"]

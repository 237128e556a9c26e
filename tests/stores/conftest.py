"""The store tests that use the ``store`` fixture run as the conformance suite does: on asyncio's loop and
on uvloop's."""

from tests.conformance.conftest import pytest_asyncio_loop_factories

__all__ = ["pytest_asyncio_loop_factories"]

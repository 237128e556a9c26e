"""The store tests that use the ``store`` fixture run as the conformance suite does: the postgres leg on
asyncio's loop and on uvloop's, the sqlite leg on asyncio's only."""

from tests.conformance.conftest import pytest_asyncio_loop_factories, pytest_collection_modifyitems

__all__ = ["pytest_asyncio_loop_factories", "pytest_collection_modifyitems"]

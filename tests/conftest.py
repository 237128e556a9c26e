"""Fixtures shared by every test: an injectable clock and the store backends of the conformance suite.

The conformance suite (``spoolerd.testing``, run here by tests/conformance/test_suite.py) runs unchanged
against every backend listed in ``STORE_BACKENDS``; a provider joins by adding how to make a fresh store.
"""

from __future__ import annotations

import asyncio
import compileall
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from spoolerd import logsetup, maillog
from spoolerd.plugins import PluginRegistry
from spoolerd.testing import FakeClock, StoreBackend, StoreFactory
from stores.postgres.testing import PostgresBackend, create_database, drop_database
from stores.sqlite.testing import SqliteBackend
from tests.peers import postgres

pytest_plugins = ["spoolerd.testing.plugin"]

__all__ = ["FakeClock", "StoreFactory", "reap"]


def pytest_sessionstart(session: pytest.Session) -> None:
    """The project's modules compiled once, as an install or a first import would leave them: with
    PYTHONDONTWRITEBYTECODE set (as on the CI machines) every daemon, sendmail and spoolerctl the tests
    start compiled them from source again (about 10% of the suite's time)."""
    if sys.dont_write_bytecode:
        root = Path(__file__).resolve().parents[1]
        for package in ("spoolerd", "stores", "transports", "tests/plugins"):
            compileall.compile_dir(root / package, quiet=1)


@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    """A test whose daemon configures logging (a reload does, at level info) leaves structlog as it
    found it: a later test's ``capture_logs`` must still see debug lines (the smtp transport's
    ``connections aborted`` was filtered out after tests/dkim/test_daemon.py's reload)."""
    root = logging.getLogger()
    level = root.level
    yield
    structlog.reset_defaults()
    maillog.direct_writer(None)
    for handler in [h for h in root.handlers if isinstance(h, logsetup._LibraryLines)]:
        root.removeHandler(handler)  # the libraries' lines, which configure_logging routes to stderr
    root.setLevel(level)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A database of this test session on the test server, dropped at the end; tests that need it skip
    without a server, or fail under SPOOLERD_REQUIRE_PEERS."""
    problem = postgres.unavailable()
    if problem is not None:
        if os.environ.get("SPOOLERD_REQUIRE_PEERS"):
            pytest.fail(problem)
        pytest.skip(problem)
    name = f"spoolerd_test_{os.getpid()}"
    dsn = asyncio.run(create_database(postgres.ADMIN_DSN, name))
    yield dsn
    asyncio.run(drop_database(postgres.ADMIN_DSN, name))


# provider name -> its backend, from the session's fixtures
STORE_BACKENDS: dict[str, Callable[[pytest.FixtureRequest], StoreBackend]] = {
    "sqlite": lambda request: SqliteBackend(),
    "postgres": lambda request: PostgresBackend(request.getfixturevalue("postgres_dsn")),
}


@pytest.fixture(params=sorted(STORE_BACKENDS))
def store_backend(request: pytest.FixtureRequest) -> StoreBackend:
    return STORE_BACKENDS[request.param](request)


@pytest.fixture(scope="session")
def registry() -> PluginRegistry:
    return PluginRegistry()


async def reap(proc: asyncio.subprocess.Process) -> None:
    """Kill a daemon a test started if it is still running (after a failed assertion, say)."""
    if proc.returncode is None:
        proc.kill()
        await proc.wait()

"""The store conformance suite, shipped so any store provider can prove it keeps the store contract.

A third party runs the whole suite against its provider with two lines in its ``conftest.py``::

    pytest_plugins = ["spoolerd.testing.plugin"]

    @pytest.fixture
    def store_backend() -> StoreBackend:
        return MyBackend()  # how to make (and drop) a fresh, empty store of the provider

and one test module that imports the suite: ``from spoolerd.testing.conformance import *``. Parametrize
``store_backend`` to run it against several providers (spoolerd's own tests do, for sqlite and postgres).
The suite needs pytest, pytest-asyncio (``asyncio_mode = "auto"``) and anyio: spoolerd's ``[test]`` extra.
"""

from .backend import FakeClock, StoreBackend, StoreFactory

__all__ = ["FakeClock", "StoreBackend", "StoreFactory"]

"""The store conformance suite (``spoolerd.testing.conformance``), run against every backend in
tests/conftest.py's ``STORE_BACKENDS``, exactly as a third party runs it against its own."""

from spoolerd.testing.conformance import *  # noqa: F403

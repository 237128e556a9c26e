"""The embedded default store provider (entry point ``sqlite`` in ``spoolerd.stores``)."""

from .store import SqliteSettings, SqliteStore

__all__ = ["SqliteSettings", "SqliteStore"]

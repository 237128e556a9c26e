"""The PostgreSQL store provider (entry point ``postgres`` in ``spoolerd.stores``): several daemons, on one
machine or many, share one queue."""

from .settings import PostgresSettings
from .store import PostgresStore

__all__ = ["PostgresSettings", "PostgresStore"]

"""``[stores.NAME]`` keys of a store with ``provider = "sqlite"``."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SqliteSettings"]


class SqliteSettings(BaseModel):
    """``[stores.NAME]`` keys of a store with ``provider = "sqlite"``."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(Path("spool.db"), description="database file; relative to the state directory")
    busy_timeout: float = Field(10.0, gt=0, description="seconds to wait for another process's write lock")
    reader_threads: int = Field(2, ge=1, le=16, description="threads serving reads")
    max_batch: int = Field(1024, ge=1, description="most writes committed by one transaction (group commit)")
    queue_page: int = Field(512, ge=1, le=100_000, description="queue rows read per page when iterating")

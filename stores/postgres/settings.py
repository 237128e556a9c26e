"""``[stores.NAME]`` keys of a store with ``provider = "postgres"``, and where its password comes from.

The password is never in the configuration file: it is read from ``password_file`` (relative to the state
directory) or, without one, from libpq's own places (``PGPASSWORD``, ``~/.pgpass``), which asyncpg reads.
A DSN that carries a password is refused, and the DSN shown in logs and errors never has one.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spoolerd.errors import ConfigError
from spoolerd.wiretext import has_control

__all__ = ["PostgresSettings", "read_password"]

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresSettings(BaseModel):
    """``[stores.NAME]`` keys of a store with ``provider = "postgres"``."""

    model_config = ConfigDict(extra="forbid")

    dsn: str = Field(
        "postgresql://localhost/spoolerd",
        description="libpq connection URI (postgresql://USER@HOST:PORT/DATABASE?sslmode=...), without a"
        " password: that comes from password_file or the environment (PGPASSWORD, ~/.pgpass)",
    )
    password_file: Path | None = Field(
        None, description="file holding the database password (first line); relative to the state directory"
    )
    schema_name: str = Field(
        "spoolerd",
        description="PostgreSQL schema holding the store's tables (created if missing); several stores"
        " may share one database under different schemas",
    )
    pool_min: int = Field(1, ge=0, le=100, description="connections the pool keeps open")
    pool_max: int = Field(8, ge=1, le=100, description="most connections the pool opens")
    connect_timeout: float = Field(10.0, gt=0, description="seconds to wait for a connection")
    command_timeout: float = Field(30.0, gt=0, description="seconds to wait for one statement's answer")
    queue_page: int = Field(512, ge=1, le=100_000, description="queue rows read per page when iterating")

    @field_validator("dsn")
    @classmethod
    def _no_password(cls, dsn: str) -> str:
        parts = urlsplit(dsn)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URI")
        if parts.password is not None or re.search(r"(^|[?&])password=", parts.query):
            raise ValueError("must not contain a password: use password_file or PGPASSWORD")
        if has_control(dsn):
            raise ValueError("contains a control character")
        return dsn

    @field_validator("schema_name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError("must be a lower-case SQL identifier (letters, digits, _)")
        return name


def read_password(settings: PostgresSettings, state_dir: Path) -> str | None:
    """The password from ``password_file``; None lets libpq's environment decide."""
    if settings.password_file is None:
        return None
    path = (
        settings.password_file if settings.password_file.is_absolute() else state_dir / settings.password_file
    )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"password_file: cannot read {path}: {exc}"]) from exc
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise ConfigError([f"password_file: {path} is empty"])
    return lines[0]

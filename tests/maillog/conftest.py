"""A real daemon relaying through the smtp transport, whose stderr (the mail log) the tests read."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.control.conftest import Daemon
from tests.smtp.conftest import certs, smtp_server

__all__ = ["RelayDaemon", "certs", "records", "smtp_server", "wait_records"]


class RelayDaemon(Daemon):
    """One store that owns @localhost, loopback, and an smtp transport named ``relay`` to 127.0.0.1."""

    def __init__(
        self, root: Path, port: int, *, fmt: str = "json", level: str = "info", **relay: Any
    ) -> None:
        super().__init__(root)
        self.port = port
        self.fmt, self.level = fmt, level
        self.relay = {"tls": "none", "helo": "spool.test", **relay}

    def write_config(self) -> Path:
        cfg = self.root / "spoolerd.toml"
        relay = "\n".join(f"{k} = {json.dumps(v)}" for k, v in self.relay.items())
        cfg.write_text(
            f'[spooler]\nstate_dir = "{self.root / "state"}"\n[control]\nsocket = "{self.socket}"\n'
            f'[log]\nformat = "{self.fmt}"\nlevel = "{self.level}"\n'
            f'[stores.local]\nprovider = "sqlite"\naddresses = ["@localhost"]\n'
            f'[transports.loopback]\nprovider = "loopback"\n'
            f'[transports.relay]\nprovider = "smtp"\nhost = "127.0.0.1"\nport = {self.port}\n{relay}\n'
        )
        return cfg

    async def wait_text(self, needle: str, start: int = 0) -> str:
        """Wait for a console line holding ``needle``; that line."""
        return self.log[await self.log_line(lambda line: needle.encode() in line, start)].decode()


def records(daemon: Daemon, event: str) -> list[dict[str, Any]]:
    """A daemon's JSON lines (format json) of one event, in order."""
    return [r for r in map(_record, daemon.log) if r.get("event") == event]


async def wait_records(
    daemon: Daemon, event: str, count: int, where: Callable[[dict[str, Any]], bool] = lambda r: True
) -> list[dict[str, Any]]:
    """Wait for ``count`` JSON lines of ``event`` that match ``where``; all of them so far."""

    def match(line: bytes) -> bool:
        record = _record(line)
        return record.get("event") == event and where(record)

    start = 0
    for _ in range(count):
        start = 1 + await daemon.log_line(match, start)
    return [r for r in records(daemon, event) if where(r)]


def _record(line: bytes) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


@pytest.fixture
def root() -> Path:
    path = Path(tempfile.mkdtemp(prefix="spl"))  # short: a socket path has at most 107 bytes
    os.chmod(path, 0o755)
    return path


@pytest.fixture
async def daemons() -> AsyncIterator[list[Daemon]]:
    """Daemons a test started: stopped after it (each must exit 0)."""
    started: list[Daemon] = []
    yield started
    for d in started:
        for client in d.clients:
            await client.stream.aclose()
        if d.proc is not None and d.proc.returncode is None:
            assert await d.stop() == 0

"""A real daemon process per test, and a line-protocol client for it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest


class Client:
    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.next_id = 0

    async def line(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive(1 << 20)
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(raw)  # type: ignore[no-any-return]

    async def raw(self, data: bytes) -> dict[str, Any]:
        await self.stream.send(data)
        with anyio.fail_after(30):
            return await self.line()

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        self.next_id += 1
        answer = await self.raw(json.dumps({"id": self.next_id, "cmd": cmd, "args": args}).encode() + b"\n")
        assert answer["id"] == self.next_id
        return answer

    async def ok(self, cmd: str, **args: Any) -> Any:
        answer = await self.call(cmd, **args)
        assert answer["ok"], answer
        return answer["result"]


class Daemon:
    def __init__(self, root: Path, extra: str = "") -> None:
        self.root = root
        self.extra = extra  # more settings for the "remote" test transport
        self.drop = root / "drop"  # what the "feed" transport downloads on flush --download
        self.drop.mkdir(exist_ok=True)
        self.socket = root / "control.sock"
        self.proc: asyncio.subprocess.Process | None = None
        self.clients: list[Client] = []
        self.log: list[bytes] = []  # its stderr, line by line, read as it comes (a full pipe would stall it)
        self._logged = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        cfg = self.write_config()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "spoolerd.cli", "run", "--config", str(cfg), stderr=subprocess.PIPE
        )
        assert self.proc.stderr is not None
        began = len(self.log)  # a restarted daemon's lines follow its earlier life's
        self._reader = asyncio.get_running_loop().create_task(self._read_log(self.proc.stderr))
        await self.log_line(
            lambda line: b"spooler running" in line, began, exited="the daemon exited before it was ready"
        )

    async def _read_log(self, stderr: asyncio.StreamReader) -> None:
        while line := await stderr.readline():
            self.log.append(line)
            self._wake_readers()
        self._wake_readers()  # the end: they see it

    def _wake_readers(self) -> None:
        self._logged.set()
        self._logged = asyncio.Event()  # the next wait is for the next line

    async def log_line(self, match: Callable[[bytes], bool], start: int = 0, *, exited: str = "") -> int:
        """Wait (30 s at most) until a line from ``start`` on matches; its index in ``log``."""
        with anyio.fail_after(30):
            while True:
                for i in range(start, len(self.log)):
                    if match(self.log[i]):
                        return i
                start = len(self.log)
                assert self._reader is not None
                if self._reader.done():
                    raise AssertionError(exited or "the daemon exited without logging the line")
                await self._logged.wait()

    def write_config(self) -> Path:
        cfg = self.root / "spoolerd.toml"
        cfg.write_text(
            f"""
[spooler]
state_dir = "{self.root / "state"}"
[control]
socket = "{self.socket}"
[log]
format = "json"
[stores.local]
provider = "sqlite"
addresses = ["@localhost"]
[transports.loopback]
provider = "loopback"
{self.transports()}
"""
        )
        return cfg

    def transports(self) -> str:
        """The [transports.*] sections after loopback."""
        return f"""
[transports.remote]
provider = "test-scripted"
perm_fail = ["nobody@remote.test"]
{self.extra}
[transports.feed]
provider = "test-inbound"
drop_dir = "{self.drop}"
"""

    async def client(self) -> Client:
        client = Client(await anyio.connect_unix(self.socket))
        self.clients.append(client)
        return client

    async def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            code = await self.proc.wait()
            if self._reader is not None:
                await self._reader  # every line it wrote
            return code


def short_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="spd"))  # short: a socket path has at most 107 bytes
    os.chmod(root, 0o755)
    return root


D = TypeVar("D", bound=Daemon)


@contextlib.asynccontextmanager
async def serving(d: D) -> AsyncIterator[D]:
    """Start the daemon; on the way out, close its clients and stop it (it must exit 0)."""
    await d.start()
    yield d
    for client in d.clients:
        await client.stream.aclose()
    if d.proc is not None and d.proc.returncode is None:
        assert await d.stop() == 0


@pytest.fixture
async def daemon() -> AsyncIterator[Daemon]:
    async with serving(Daemon(short_root())) as d:
        yield d


async def running(kind: type[D]) -> AsyncIterator[D]:
    """A started daemon of ``kind`` in a fresh directory, stopped (exit 0) after its one use."""
    async with serving(kind(short_root())) as d:
        yield d

"""A full disk is a state, not a flood (issue #13 part 3): a real daemon whose state directory is on a
small tmpfs that fills up while mail is due. It logs one line when the store starts failing (no
traceback per attempt), shows the store failing in ``status`` with the reason, spends little CPU while
it waits, and delivers everything by itself once space returns, with one line saying so."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.control.conftest import Client

MESSAGES = 20


@pytest.fixture
def small_disk() -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="spdfull"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], check=False)
    if mounted.returncode != 0:
        where.rmdir()
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def fill(disk: Path) -> Path:
    """Write a file until the disk is full. Unbuffered: a buffered file's close would try again to
    write what a full disk refused, and raise (depending on how the free space divides into blocks)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Log:
    """The daemon's JSON log lines, read as they come."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.stream = stream
        self.lines: list[dict[str, object]] = []

    async def until(self, event: str) -> dict[str, object]:
        while True:
            raw = await self.stream.readline()
            assert raw, "the daemon exited"
            line = json.loads(raw) if raw.startswith(b"{") else {"event": raw.decode()}
            self.lines.append(line)
            if line.get("event") == event:
                return line


@pytest.mark.timeout(120)
async def test_a_full_disk_is_one_state_change_and_delivery_resumes_when_space_returns(  # noqa: PLR0915
    small_disk: Path,
) -> None:
    root = Path(tempfile.mkdtemp(prefix="spd"))
    os.chmod(root, 0o755)
    delivered = root / "delivered.log"
    cfg = root / "spoolerd.toml"
    cfg.write_text(
        f"""
[spooler]
state_dir = "{small_disk}"
preprocessors = []
[control]
socket = "{root / "control.sock"}"
[log]
format = "json"
[stores.local]
provider = "sqlite"
[transports.remote]
provider = "test-scripted"
log_file = "{delivered}"
"""
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spoolerd.cli", "run", "--config", str(cfg), stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    log = Log(proc.stderr)
    try:
        with anyio.fail_after(30):
            await log.until("spooler running")
        client = Client(await anyio.connect_unix(root / "control.sock"))
        due = time.time() + 2
        for n in range(MESSAGES):
            await client.ok(
                "submit",
                message="U3ViamVjdDogZnVsbA0KDQpib2R5DQo=",  # Subject: full / body
                sender="me@example.org",
                recipients=[f"r{n}@remote.test"],
                not_before=due,
            )
        filler = fill(small_disk)
        with anyio.fail_after(20):
            failing = await log.until("store failing")
        assert failing["store"] == "local" and "full" in str(failing["error"]), failing

        before, started = cpu_seconds(proc.pid), time.monotonic()
        await anyio.sleep(4)  # a measurement window while the disk stays full, not a wait for state
        rows = await client.ok("status")
        cpu = cpu_seconds(proc.pid) - before
        (store_row,) = [r for r in rows if r["resource_type"] == "store"]
        assert store_row["status"] == ["failure"] and "full" in store_row["last_error"], store_row
        assert store_row["since"] is not None

        events = Client(await anyio.connect_unix(root / "control.sock"))
        await events.stream.send(b'{"id": 1, "cmd": "subscribe", "args": {}}\n')
        filler.unlink()
        with anyio.fail_after(60):
            recovered = await log.until("store available again")
            sent = 0
            while sent < MESSAGES:
                event = (await events.line()).get("event") or {}
                sent += event.get("recipients", 0) if event.get("type") == "delivered" else 0
        print(
            f"\nfull disk: recovered {recovered['failing_for']} s after failing; {len(log.lines)} log lines"
        )
        window = time.monotonic() - started
        assert float(str(recovered["failing_for"])) < 20  # the wait doubles from 1 s: tried again soon
        assert len(delivered.read_text().splitlines()) == MESSAGES
        failing_lines = [x for x in log.lines if x.get("event") == "store failing"]
        tracebacks = [x for x in log.lines if "exception" in x]
        assert len(failing_lines) == 1, failing_lines
        assert tracebacks == [], tracebacks[:2]
        assert len(log.lines) < 40, len(log.lines)  # today's flood was ~250 lines a second
        assert cpu < 0.1 * window + 0.2, (cpu, window)
        await client.stream.aclose()
        await events.stream.aclose()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                await proc.wait()

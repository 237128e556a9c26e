"""What the side-by-side benchmarks share: the messages, the smtp-sink both sides deliver to, an SMTP
injector, spoolerd's config at its shipped defaults, a running ``spoolerd run``, and the peak RSS and
load each row reports.

Every bench that compares spoolerd with Postfix gives both sides the same messages (``content``), the
same sink and the same client, and leaves each side at its defaults: spoolerd's config below names only
what a relay needs (where to relay, its own directories); Postfix's is ``tests.peers.postfix``'s private
instance (a relayhost and its own directories).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import pty
import re
import resource
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.peers, when run as a script

from tests.peers.ports import free_port

SENDER = "bench@localhost"
LINE = b"x" * 76 + b"\r\n"


def content(i: int, size: int = 4096) -> bytes:
    """Message ``i`` of about ``size`` bytes, CRLF, 7-bit, with every header a submission needs (so no
    side adds one the other does not)."""
    return b"".join(_parts(i, size))


def _head(i: int) -> bytes:
    return (
        f"From: bench@localhost\r\nTo: sink@remote.test\r\nSubject: bench {i}\r\n"
        f"Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{i}@bench.test>\r\n\r\n"
    ).encode()


def recipients(count: int) -> list[str]:
    return [f"r{j}@remote.test" for j in range(count)]


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Sink:
    """smtp-sink and its running counter (-c: ``sess=S quit=Q mesg=M`` per event), read from a pty since
    smtp-sink buffers its output when it is not a terminal. ``arrived`` is when the count last grew."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages = 0
        self.arrived = 0.0
        self._changed = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        master, slave = pty.openpty()
        self.proc = await asyncio.create_subprocess_exec(
            "smtp-sink", "-c", "-u", "postfix", f"127.0.0.1:{self.port}", "1000", stdout=slave
        )
        os.close(slave)
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(master, "rb", 0))
        self._reader = loop.create_task(self._read(reader))
        for _ in range(100):  # ready when it accepts a connection (a startup wait, not a state poll)
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
        raise RuntimeError("smtp-sink did not start")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):  # EIO once smtp-sink is gone
            while chunk := await reader.read(1 << 16):
                found = re.findall(rb"mesg=(\d+)", chunk)
                if found and int(found[-1]) != self.messages:
                    self.messages = int(found[-1])
                    self.arrived = time.monotonic()
                    self._changed.set()

    async def wait_for(self, count: int, limit: float = 1800.0) -> float:
        """Wait until the sink has counted ``count`` messages; when the last of them arrived."""
        async with asyncio.timeout(limit):
            while self.messages < count:
                self._changed.clear()
                await self._changed.wait()
        return self.arrived

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def inject(port: int, messages: int, rcpts: int, size: int, connections: int = 16) -> None:
    """The messages over SMTP, ``connections`` sessions at once, each kept for many messages: a lean
    client that pipelines (RFC 2920) each message's MAIL, RCPTs and DATA in one write and sends its
    content as ``content`` makes it (CRLF, no line starting with a dot: nothing to re-encode), the body
    one bytes object shared by every message of its length. aiosmtplib's sendmail, used before, re-encoded
    each message (line endings, dot-stuffing: 8 ms of the bench's CPU a megabyte) and held both sides
    to the same ~65 messages a second at 1 MB."""
    envelope = f"MAIL FROM:<{SENDER}>\r\n".encode() + b"".join(
        f"RCPT TO:<{to}>\r\n".encode() for to in recipients(rcpts)
    )
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(messages):
        queue.put_nowait(i)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await _expect(reader, 220)
            writer.write(b"EHLO bench.test\r\n")
            assert "PIPELINING" in await _expect(reader, 250)
            while not queue.empty():
                head, body = _parts(queue.get_nowait(), size)
                writer.write(envelope + b"DATA\r\n")
                for code in (250,) * (1 + rcpts) + (354,):
                    await _expect(reader, code)
                writer.writelines((head, body, b".\r\n"))
                await _expect(reader, 250)
            writer.write(b"QUIT\r\n")
            await _expect(reader, 221)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(min(connections, messages))))


def _parts(i: int, size: int) -> tuple[bytes, bytes]:
    """``content(i, size)`` as its header section and its body (the same object for every message)."""
    head = _head(i)
    return head, _body(max(1, (size - len(head)) // len(LINE)))


@functools.lru_cache(maxsize=8)
def _body(lines: int) -> bytes:
    return LINE * lines


async def _expect(reader: asyncio.StreamReader, code: int) -> str:
    """The next reply, which must have ``code``; its text."""
    lines = []
    while True:
        line = await asyncio.wait_for(reader.readline(), 120)
        assert line[:3] == str(code).encode(), (code, line)
        lines.append(line[4:].decode().strip())
        if line[3:4] != b"-":
            return "\n".join(lines)


# ------------------------------------------------------------------------------------------ spoolerd


def spoolerd_config(state_dir: str, sink_port: int, listen: int | None = None) -> str:
    """spoolerd at its shipped defaults: only where to relay (no TLS at smtp-sink) and its own state
    directory and socket; with ``listen``, an SMTP listener there too."""
    text = f"""
[spooler]
state_dir = "{state_dir}"
[control]
socket = "{state_dir}/control.sock"
[stores.local]
provider = "sqlite"
addresses = ["@localhost"]
[transports.relay]
provider = "smtp"
host = "127.0.0.1"
port = {sink_port}
tls = "none"
"""
    if listen is not None:
        text += f'[listeners.bench]\naddress = "127.0.0.1:{listen}"\n'
    return text


@dataclass
class Daemon:
    """A ``spoolerd run`` process."""

    proc: asyncio.subprocess.Process
    state_dir: Path

    @property
    def socket(self) -> Path:
        return self.state_dir / "control.sock"

    def peak_rss_mb(self) -> float:
        return vm_hwm_mb(self.proc.pid)


def cpu_seconds() -> float:
    """Seconds of CPU this process has used so far (user + system, every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """Seconds of CPU ``pid`` has used so far (user + system, all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> float:
    """Seconds of CPU the whole machine has spent busy (every core, /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def spoolerd(state_dir: str, config: str) -> AsyncIterator[Daemon]:
    """``spoolerd run`` on ``config``, ready once its control socket answers; its log is kept in the
    state directory (the mail log is written, as in production)."""
    path = Path(state_dir) / "spoolerd.toml"
    path.write_text(config)
    with (Path(state_dir) / "daemon.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "spoolerd.cli", "run", "--config", str(path), stderr=log
        )
        daemon = Daemon(proc, Path(state_dir))
        try:
            for _ in range(400):  # a startup wait: the socket appears once the daemon serves it
                with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(daemon.socket))
                    break
                if proc.returncode is not None:
                    raise RuntimeError(f"spoolerd exited {proc.returncode}")
                await asyncio.sleep(0.05)
            yield daemon
        finally:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()


# ------------------------------------------------------------------------------------------ peak RSS


def _proc_kb(pid: int, file: str, field: str) -> float:
    """A ``field: N kB`` line of /proc/PID/FILE, in MB; 0 if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/{file}").read_text()
    except OSError:
        return 0.0
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) / 1024 if found else 0.0


def vm_hwm_mb(pid: int) -> float:
    """A process's peak resident set (VmHWM), MB."""
    return _proc_kb(pid, "status", "VmHWM")


def pss_mb(pid: int) -> float:
    """A process's proportional set size now (shared pages divided among their users), MB."""
    return _proc_kb(pid, "smaps_rollup", "Pss")


def postfix_processes(root: Path) -> list[int]:
    """A private Postfix's master and its children alive now."""
    try:
        master = int((root / "queue" / "pid" / "master.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [master]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(stat.parent.name))
    return pids


def postfix_memory(root: Path) -> dict[str, float]:
    """``peak_rss_mb``: the sum of its processes' peak RSS, an upper bound of the instance's peak (the
    peaks need not coincide, and shared pages count in each); ``pss_mb``: its processes' proportional
    set size now, shared pages divided among them (its footprint at the end of the leg)."""
    pids = postfix_processes(root)
    return {"peak_rss_mb": sum(map(vm_hwm_mb, pids)), "pss_mb": sum(map(pss_mb, pids))}

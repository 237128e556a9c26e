"""Delivery workers: ``[spooler] workers = N`` runs N - 1 more delivery processes beside the daemon.

Each worker is ``spoolerd run --worker K`` on the same configuration: it opens the same stores, claims due
messages from them in batches (``Claiming``: disjoint batches, never one message twice) and delivers
them on a core of its own, under its own lease owner, a sub-owner of the daemon's (``OWNER#wK``). It has
no face (control socket, listeners, metrics, webhooks) and downloads nothing: the daemon keeps those.

The daemon supervises: a worker that exits unexpectedly is logged and started again after a doubling
wait; at shutdown each worker gets SIGTERM and finishes its attempts within the deadline. What an
operator asks of the daemon that concerns delivery reaches each worker as a command on a pipe, its
stdin (spoolerd/worker_channel.py): first the configuration the daemon runs on (a worker never reads
the file), then each reload the daemon applied (SIGHUP or ``spoolerctl reload``) with the configuration
it came to, and ``spoolerctl offline`` / ``online``. A worker dies with the daemon (the kernel's
parent-death signal), so a ``kill -9`` of the daemon leaves no worker delivering under a name the
restarted daemon takes back at once (``reclaim`` of its owner takes its sub-owners' leases too).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Collection, Sequence

import structlog

from .config import Config
from .retry import Backoff
from .spooler import Spooler
from .worker_channel import LINE_LIMIT, WorkerCommand, decode, encode, online_command, reload_command

__all__ = ["DaemonCommands", "Workers", "apply_online", "die_with_parent", "obey", "worker_owner"]

log = structlog.get_logger("spoolerd.workers")

_PR_SET_PDEATHSIG = 1


def worker_owner(owner: str, worker: int) -> str:
    """Worker ``worker``'s lease owner: a sub-owner of the daemon's ``owner``."""
    return f"{owner}#w{worker}"


def die_with_parent(parent: int) -> None:
    """Be sent SIGKILL when the daemon that started this worker dies; exit now if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:  # it died before the signal was armed
        os._exit(1)


class Workers:
    """The daemon's N - 1 worker processes, started, restarted and stopped."""

    def __init__(
        self,
        count: int,
        config_source: str | None,
        *,
        config: Callable[[], Config],
        deadline: float,
        offline: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        self.count = count
        self._source = config_source  # named on the command line (the file's name in messages)
        self._config = config  # the daemon's running configuration: what a worker starts on
        self._deadline = deadline
        self._offline = offline  # the daemon's transports offline now: where a worker starts from
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def _command(self, worker: int, offline: Collection[str]) -> Sequence[str]:
        config = [] if self._source is None else ["--config", self._source]
        taken = [f"--offline={name}" for name in sorted(offline)]
        return [sys.executable, "-m", "spoolerd.cli", "run", *config, "--worker", str(worker), *taken]

    async def start(self) -> None:
        for worker in range(1, self.count):
            self._tasks.append(asyncio.create_task(self._keep(worker), name=f"worker-{worker}"))

    async def _keep(self, worker: int) -> None:
        """Run worker ``worker`` until the daemon stops, starting it again whenever it ends early."""
        backoff = Backoff()
        env = {**os.environ, "SPOOLERD_PARENT_PID": str(os.getpid())}
        while not self._stopping:
            offline = set(self._offline())
            stdin = asyncio.subprocess.PIPE  # the daemon's commands (``send``)
            proc = await asyncio.create_subprocess_exec(*self._command(worker, offline), env=env, stdin=stdin)
            self._procs[worker] = proc  # told from now on; what it starts on, and what changed meanwhile:
            self._write(proc, reload_command(self._config()))
            now = set(self._offline())
            for name in sorted(now ^ offline):
                self._write(proc, online_command(name, name in offline))
            log.info("worker started", worker=worker, pid=proc.pid)
            code = await proc.wait()
            if self._stopping:
                return
            wait = backoff.failed()
            log.error("worker exited; starting it again", worker=worker, pid=proc.pid, status=code, wait=wait)
            await asyncio.sleep(wait)

    def send(self, command: WorkerCommand) -> None:
        """Tell every running worker (without waiting: a line or two in a pipe's buffer). One being
        started again is given the configuration and the state as they are when it starts."""
        for proc in self._procs.values():
            self._write(proc, command)

    @staticmethod
    def _write(proc: asyncio.subprocess.Process, command: WorkerCommand) -> None:
        if proc.returncode is None and proc.stdin is not None:
            proc.stdin.write(encode(command))

    def signal(self, signum: int) -> None:
        """Send ``signum`` (SIGTERM: stop) to every running worker."""
        for proc in self._procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signum)

    async def stop(self) -> None:
        """SIGTERM to each worker; SIGKILL to any still running after the shutdown deadline."""
        self._stopping = True
        self.signal(signal.SIGTERM)
        running = [p for p in self._procs.values() if p.returncode is None]
        if running:  # each within the deadline (and a little, for its exit), else killed
            await asyncio.wait([asyncio.ensure_future(p.wait()) for p in running], timeout=self._deadline + 5)
        for proc in running:
            if proc.returncode is None:
                log.error("worker did not stop in time; killed", pid=proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def apply_online(spooler: Spooler, transport: str, online: bool) -> None:
    """In a worker: take ``transport`` online or offline as the daemon did (``Spooler.set_online`` logs
    it; the line carries ``worker``). One the worker does not have (a reload the worker refused, where
    the daemon's went through) is named and skipped."""
    if spooler.dispatcher.slot(transport) is None:
        log.warning("no such transport in this worker", transport=transport, online=online)
        return
    spooler.set_online(transport, online)


class DaemonCommands:
    """In a worker: the daemon's commands on ``stdin``, in order (``open``, then ``next``)."""

    def __init__(self, reader: asyncio.StreamReader, transport: asyncio.BaseTransport) -> None:
        self._reader = reader
        self._transport = transport

    @classmethod
    async def open(cls, stdin: int = 0) -> DaemonCommands:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=LINE_LIMIT)
        pipe = os.fdopen(stdin, "rb", buffering=0, closefd=False)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        return cls(reader, transport)

    async def next(self) -> WorkerCommand | None:
        """The next command the worker understands; ``None`` once the daemon has closed its end."""
        while line := await self._reader.readline():
            try:
                return decode(line)
            except ValueError as exc:
                log.warning("daemon command not understood", problem=str(exc))
        return None

    def close(self) -> None:
        self._transport.close()


async def obey(commands: DaemonCommands, apply: Callable[[WorkerCommand], Awaitable[None]]) -> None:
    """In a worker: ``apply`` each of the daemon's commands, in order, as the event loop hears of them;
    returns when the daemon closes its end."""
    try:
        while (command := await commands.next()) is not None:
            await apply(command)
    finally:
        commands.close()

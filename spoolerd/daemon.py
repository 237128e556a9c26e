"""Running an assembled daemon (spoolerd/assembly.py): the state directory's lock, stores, transports and
the spooler started in order and stopped in reverse, and the faces on top of them: the SMTP listeners and
the control socket, which are handed the daemon as their ``Host`` (spoolerd/host.py) and never import
this module.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator, Collection, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path

import anyio
import structlog

from .assembly import (
    Daemon,
    build,
    coupled_transports,
    delivery_settings,
    lease_owner,
    open_transports,
    start_transports,
    stop_transports,
)
from .config import Config, control_socket
from .control.server import ControlServer
from .errors import StateDirBusy
from .fsutil import make_dirs_durably
from .listener.server import RELOAD_DRAIN, Listeners, drain
from .reconfigure import reload
from .retention import sent_keepers
from .workers import apply_online, worker_owner

__all__ = [
    "Daemon",
    "build",
    "coupled_transports",
    "delivery_settings",
    "lease_owner",
    "open_transports",
    "running",
    "running_worker",
    "start_transports",
    "state_lock",
    "stop_intake",
    "stop_transports",
]

log = structlog.get_logger("spoolerd.daemon")


@contextmanager
def state_lock(state_dir: Path, name: str = "spoolerd.lock") -> Iterator[None]:
    """Hold ``STATE_DIR/spoolerd.lock`` for the daemon's life: a second daemon on the same directory
    would deliver the same messages under the same lock owner (a worker holds ``worker-K.lock``)."""
    make_dirs_durably(str(state_dir))
    fd = os.open(os.path.join(state_dir, name), os.O_RDWR | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            busy = f"another spoolerd is running with the state directory {state_dir} ({name})"
            raise StateDirBusy(busy) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


async def _start_engine(stack: AsyncExitStack, daemon: Daemon) -> None:
    """The stores (each taking back what this lease owner held in its previous life), then the
    transports, each stopped by ``stack`` on the way out."""
    daemon.reload = partial(reload, daemon)
    owner = daemon.spooler.dispatcher.owner
    for name, store in daemon.stores.items():
        await store.start()
        stack.push_async_callback(store.stop)
        if store.can_queue and (taken := await store.reclaim(owner)):
            log.info("took back the leases of a previous run", store=name, messages=taken)
    await start_transports(daemon.transports)
    # those running at exit: a reload may have replaced some (it stops the ones it retires)
    stack.push_async_callback(lambda: stop_transports(daemon.transports))


@asynccontextmanager
async def running(daemon: Daemon) -> AsyncIterator[Daemon]:
    """Start stores, then transports, then the spooler; stop them in reverse order on exit."""
    async with AsyncExitStack() as stack:
        stack.enter_context(state_lock(daemon.config.spooler.state_dir))
        await _start_engine(stack, daemon)
        listeners = Listeners(daemon)
        stack.push_async_callback(listeners.stop, 0.0)
        await listeners.open_all()  # ListenerUnavailable: a clear error, and what started is stopped
        daemon.status_rows.append(listeners.rows)
        daemon.on_stop.append(listeners.stop)
        metrics = None
        if daemon.config.metrics.address is not None:
            from .metrics.server import MetricsServer  # a face, like the listeners

            metrics = MetricsServer(daemon, daemon.config.metrics.address)
            await metrics.open()  # MetricsUnavailable: a clear error, and what started is stopped
            stack.push_async_callback(metrics.close)
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.spooler.run)
            spooler = daemon.spooler
            keep = {name: section.sent_retention for name, section in daemon.config.stores.items()}
            daemon.keepers = sent_keepers(keep, daemon.stores, clock=spooler.clock, events=spooler.events)
            for keeper in daemon.keepers.values():
                await tg.start(keeper.run)
            if daemon.webhooks is not None:
                await tg.start(daemon.webhooks.run)
                daemon.status_rows.append(daemon.webhooks.rows)
            if metrics is not None:
                await tg.start(metrics.serve)
            control = daemon.config.control
            if control.enabled:
                server = ControlServer(
                    daemon,
                    control_socket(daemon.config),
                    rate=control.rate,
                    burst=control.burst,
                )
                daemon.on_reload.append(server.reconfigure)
                await tg.start(server.serve)

            async def reconfigure_listeners(config: Config) -> list[str]:
                changed = await listeners.reconfigure(config)
                for context in changed.retired:  # the reload's answer does not wait for these
                    tg.start_soon(drain, context, RELOAD_DRAIN)
                return changed.problems

            daemon.apply_on_reload.append(reconfigure_listeners)
            log.info(
                "spooler running",
                stores=sorted(daemon.stores),
                transports=[t.name for t in daemon.transports],
            )
            try:
                yield daemon
            finally:
                await stop_intake(daemon, 0.0)
                await daemon.spooler.shutdown()
                tg.cancel_scope.cancel()  # the control server


@asynccontextmanager
async def running_worker(daemon: Daemon, worker: int, offline: Collection[str] = ()) -> AsyncIterator[Daemon]:
    """A delivery worker (spoolerd/workers.py): the stores, the transports and the spooler, delivering
    under the worker's own lease owner; no face, no downloads, no Sent Items keeper (the daemon's). The
    transports ``offline`` (the daemon's, when it started this worker) are offline before anything is
    claimed."""
    async with AsyncExitStack() as stack:
        state_dir = daemon.config.spooler.state_dir
        stack.enter_context(state_lock(state_dir, f"worker-{worker}.lock"))
        spooler = daemon.spooler
        spooler.dispatcher.owner = worker_owner(spooler.dispatcher.owner, worker)
        spooler.receives = False
        await _start_engine(stack, daemon)
        for name in offline:
            apply_online(spooler, name, False)
        async with anyio.create_task_group() as tg:
            await tg.start(spooler.run)
            log.info("worker running", worker=worker, stores=sorted(daemon.stores))
            try:
                yield daemon
            finally:
                await spooler.shutdown()
                tg.cancel_scope.cancel()


async def stop_intake(daemon: Daemon, deadline: float) -> None:
    """The first phase of a shutdown: the faces that take mail in (SMTP listeners) stop accepting and
    finish what they were given within ``deadline`` seconds, before the spooler stops."""
    hooks, daemon.on_stop = daemon.on_stop, []
    for hook in hooks:
        await hook(deadline)

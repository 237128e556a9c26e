"""Running an assembled daemon (spoolerd/assembly.py): the state directory's lock, stores, transports and
the spooler started in order and stopped in reverse, and the faces on top of them: the SMTP listeners and
the control socket, which are handed the daemon as their ``Host`` (spoolerd/host.py) and never import
this module.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator, Iterator
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
    group_id,
    lease_owner,
    open_transports,
    start_transports,
    stop_transports,
)
from .config import Config, default_socket
from .control.server import ControlServer
from .errors import StateDirBusy
from .fsutil import make_dirs_durably
from .listener.server import Listeners
from .reconfigure import reload
from .retention import sent_keepers

__all__ = [
    "Daemon",
    "build",
    "coupled_transports",
    "delivery_settings",
    "lease_owner",
    "open_transports",
    "running",
    "start_transports",
    "state_lock",
    "stop_intake",
    "stop_transports",
]

log = structlog.get_logger("spoolerd.daemon")


@contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """Hold ``STATE_DIR/spoolerd.lock`` for the daemon's life: a second daemon on the same directory
    would deliver the same messages under the same lock owner."""
    make_dirs_durably(str(state_dir))
    fd = os.open(os.path.join(state_dir, "spoolerd.lock"), os.O_RDWR | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StateDirBusy(f"another spoolerd is running with the state directory {state_dir}") from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


@asynccontextmanager
async def running(daemon: Daemon) -> AsyncIterator[Daemon]:
    """Start stores, then transports, then the spooler; stop them in reverse order on exit."""
    async with AsyncExitStack() as stack:
        stack.enter_context(state_lock(daemon.config.spooler.state_dir))
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
                    control.socket or default_socket(daemon.config.spooler.state_dir),
                    allowed_uids=control.allowed_uids,
                    allowed_gids=[group_id(g) for g in control.allowed_groups],
                    rate=control.rate,
                    burst=control.burst,
                )
                daemon.on_reload.append(server.reconfigure)
                await tg.start(server.serve)

            def reconfigure_listeners(config: Config) -> None:
                tg.start_soon(listeners.reconfigure, config)

            daemon.on_reload.append(reconfigure_listeners)
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


async def stop_intake(daemon: Daemon, deadline: float) -> None:
    """The first phase of a shutdown: the faces that take mail in (SMTP listeners) stop accepting and
    finish what they were given within ``deadline`` seconds, before the spooler stops."""
    hooks, daemon.on_stop = daemon.on_stop, []
    for hook in hooks:
        await hook(deadline)

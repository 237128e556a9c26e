"""``spoolerd``: run the daemon, or check a configuration file without starting anything.

    spoolerd run [--config FILE]       no FILE: $SPOOLERD_CONFIG, else the embedded default (SQLite store
                                       in ./spool, loopback); SPOOLERD__SECTION__KEY variables override
    spoolerd check-config FILE         like ``postfix check`` / ``nginx -t``
    spoolerd --version

A configuration error prints every problem, naming the key, and exits with EX_CONFIG (78).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

import anyio
import structlog

from . import __version__, eventloop, gctuning
from .config import Config, load_config, parse_config
from .daemon import Daemon, build, running, running_worker, stop_intake
from .errors import ConfigError, SpoolerError
from .logsetup import configure_logging, log_as_worker
from .notify import Notifier, watchdog_interval
from .plugins import PluginRegistry
from .reconfigure import reload
from .worker_channel import WorkerCommand, online_command, reload_command
from .workers import DaemonCommands, Workers, apply_online, die_with_parent, obey

__all__ = ["EX_CONFIG", "EX_SOFTWARE", "main"]

EX_CONFIG = 78
EX_SOFTWARE = 70
SHUTDOWN_DEADLINE = 30.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spoolerd", description="a mail spooler daemon")
    parser.add_argument("--version", action="version", version=f"spoolerd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("--config", "-c", help="TOML configuration (default: $SPOOLERD_CONFIG, else built in)")
    run.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # spoolerd/workers.py starts these
    run.add_argument("--offline", action="append", default=[], help=argparse.SUPPRESS)  # ... with these
    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("file")
    return parser


def _report(exc: ConfigError) -> int:
    where = f"{exc.source}: " if exc.source else ""
    for problem in exc.problems:
        print(f"spoolerd: config error: {where}{problem}", file=sys.stderr)
    return EX_CONFIG


async def _serve(config: Config, registry: PluginRegistry, source: str | None) -> None:
    daemon = build(config, registry, source=source)
    log = structlog.get_logger("spoolerd")
    notify = Notifier()
    dispatcher = daemon.spooler.dispatcher
    workers = Workers(
        config.spooler.workers,
        source,
        config=lambda: daemon.config,
        deadline=SHUTDOWN_DEADLINE,
        offline=lambda: [slot.name for slot in dispatcher.transports if not slot.online],
    )
    # an applied reload, however asked: the configuration it came to
    daemon.on_reload.append(lambda running: workers.send(reload_command(running)))
    daemon.on_set_online.append(lambda name, online: workers.send(online_command(name, online)))
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with running(daemon), anyio.create_task_group() as tg:
            interval = watchdog_interval()
            if interval is not None:
                tg.start_soon(notify.watchdog, interval)
            gctuning.settle()  # started: what exists now lives as long as the process
            await workers.start()
            notify.ready(f"running: {len(daemon.stores)} store(s), {len(daemon.transports)} transport(s)")
            try:
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        await _reload(daemon, notify)
                        continue
                    log.info("stopping", signal=signal.Signals(signum).name)
                    notify.stopping()
                    workers.signal(signal.SIGTERM)  # they stop beside the daemon, within the deadline
                    await stop_intake(daemon, SHUTDOWN_DEADLINE)
                    await daemon.spooler.shutdown(SHUTDOWN_DEADLINE)
                    break
            finally:
                await workers.stop()
            tg.cancel_scope.cancel()


async def _serve_worker(
    registry: PluginRegistry, source: str | None, worker: int, offline: list[str]
) -> None:
    """``run --worker K [--offline NAME]...``: a delivery worker of the daemon that started it, on the
    configuration the daemon sends first (never the file: spoolerd/worker_channel.py), with the
    transports the daemon has offline (spoolerd/workers.py)."""
    die_with_parent(int(os.environ.get("SPOOLERD_PARENT_PID", os.getppid())))
    commands = await DaemonCommands.open()
    first = await commands.next()
    if first is None or first.config is None:
        raise ConfigError(["no configuration from the daemon on stdin (a worker is started by it)"], source)
    config = parse_config(first.config, source, registry)
    configure_logging(config.log)
    log_as_worker(worker)
    daemon = build(config, registry, source=source, worker=True)
    log = structlog.get_logger("spoolerd")

    async def apply(command: WorkerCommand) -> None:
        if command.config is not None:  # the daemon's reload, applied there: its configuration
            await _reload(daemon, Notifier(""), command.config)  # systemd hears from the daemon only
        elif command.transport is not None:
            apply_online(daemon.spooler, command.transport, command.cmd == "online")

    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with running_worker(daemon, worker, offline), anyio.create_task_group() as tg:
            tg.start_soon(obey, commands, apply)  # the daemon's commands, on stdin
            gctuning.settle()
            async for signum in signals:
                if signum == signal.SIGHUP:  # sent to the worker itself: the daemon's reload reaches it
                    log.info("reload ignored: a worker runs on the daemon's configuration; reload the daemon")
                    continue
                log.info("worker stopping", signal=signal.Signals(signum).name)
                await daemon.spooler.shutdown(SHUTDOWN_DEADLINE)
                break
            tg.cancel_scope.cancel()


async def _reload(daemon: Daemon, notify: Notifier, given: dict[str, Any] | None = None) -> None:
    """SIGHUP: re-read the config (a worker: apply the daemon's, ``given``); a bad one is refused
    (``reload`` logs it) and the running config kept."""
    notify.send("RELOADING=1")
    try:
        await reload(daemon, given)
    except ConfigError:
        pass
    except Exception:  # a reload must never take the daemon down
        structlog.get_logger("spoolerd").exception("reload failed; keeping the running configuration")
    notify.send("READY=1", "STATUS=running (reloaded)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    source = getattr(args, "config", None) or getattr(args, "file", None)
    if source is None and args.command == "run":
        source = os.environ.get("SPOOLERD_CONFIG") or None  # the container image sets it
    registry = PluginRegistry()
    try:
        worker = getattr(args, "worker", None)
        if worker is not None:  # on the configuration the daemon sends it, not the file's
            eventloop.run(_serve_worker, registry, source, worker, args.offline)
            return 0
        config = load_config(source, registry)
        if args.command == "check-config":
            build(config, registry, source=source)
            print(f"{source}: ok")
            return 0
        configure_logging(config.log)
        eventloop.run(_serve, config, registry, source)
    except ConfigError as exc:
        return _report(exc)
    except SpoolerError as exc:
        print(f"spoolerd: {exc}", file=sys.stderr)
        return EX_SOFTWARE
    return 0


if __name__ == "__main__":
    sys.exit(main())

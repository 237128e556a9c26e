"""A reload (SIGHUP, ``spoolerctl reload``): read the config file again and apply what a running daemon can.

The whole file is validated and checked first (``build``, as ``check-config`` does): a bad file changes
nothing. Transports are applied live: one added, changed or removed is built and started (a new or
changed one) before anything is switched, then new attempts use the new set while attempts already in
flight finish on the transports they began with; the old objects are stopped once those attempts have
ended. Logging, retry and delivery settings, lists, preprocessors, limits and the control socket's
access rules apply at once. What the running daemon cannot swap (the stores, the state directory, the
default store, the number of delivery workers, the control socket's path and whether it exists) keeps
its running value and is reported as needing a restart. Every applied change is one log line naming its
key, never a value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from .assembly import (
    Daemon,
    build,
    coupled_transports,
    delivery_settings,
    open_transports,
    start_transports,
    stop_transports,
)
from .config import Config, load_config, parse_config
from .errors import ConfigError
from .host import ReloadResult
from .logsetup import configure_logging
from .slot import TransportSlot
from .transport import Transport
from .worker_channel import line_problems

__all__ = ["RESTART_ONLY", "ReloadResult", "TransportPlan", "changed_keys", "plan_transports", "reload"]

log = structlog.get_logger("spoolerd.reload")

# Keys (and whole sections) a running daemon keeps until it restarts: the stores are opened once, the
# state directory holds the daemon's lock, the control socket and the metrics address are bound once,
# the webhooks' senders made once.
RESTART_ONLY = (
    "stores",
    "spooler.state_dir",
    "spooler.default_store",
    "spooler.workers",  # the worker processes are started once (spoolerd/workers.py)
    "control.socket",
    "control.enabled",
    "metrics.address",
    "webhooks",  # their senders and secrets are made at start
)

_MISSING = object()


@dataclass(frozen=True, slots=True)
class TransportPlan:
    added: list[str]
    changed: list[str]
    removed: list[str]
    reordered: bool


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted paths of the values that differ between two nested mappings (a key on one side only
    counts as changed)."""
    changed: list[str] = []
    for key in [*old, *(k for k in new if k not in old)]:
        path = f"{prefix}{key}"
        before, after = old.get(key, _MISSING), new.get(key, _MISSING)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            changed.extend(changed_keys(before, after, f"{path}."))
        elif before != after:
            changed.append(path)
    return changed


def _restart_only(key: str) -> bool:
    return any(key == path or key.startswith(f"{path}.") for path in RESTART_ONLY)


def _keeping_running(running: Config, new: Config) -> Config:
    """``new`` with the restart-only values the daemon runs with."""
    spooler = new.spooler.model_copy(
        update={
            "state_dir": running.spooler.state_dir,
            "default_store": running.spooler.default_store,
            "workers": running.spooler.workers,  # and max_in_flight is shared out among those running
        }
    )
    control = new.control.model_copy(
        update={"socket": running.control.socket, "enabled": running.control.enabled}
    )
    return new.model_copy(
        update={
            "stores": running.stores,
            "spooler": spooler,
            "control": control,
            "webhooks": running.webhooks,
        }
    )


def plan_transports(old: Config, new: Config) -> TransportPlan:
    """Which transports a reload from ``old`` to ``new`` adds, rebuilds or removes; a transport whose
    section or effective concurrency changed is rebuilt."""

    def shape(config: Config) -> dict[str, tuple[dict[str, Any], int]]:
        fallback = config.spooler.transport_concurrency
        return {
            name: (section.model_dump(), section.concurrency or fallback)
            for name, section in config.transports.items()
        }

    before, after = shape(old), shape(new)
    kept = [name for name in after if name in before]
    return TransportPlan(
        added=[name for name in after if name not in before],
        changed=[name for name in kept if before[name] != after[name]],
        removed=[name for name in before if name not in after],
        reordered=[name for name in before if name in after] != kept,
    )


async def reload(daemon: Daemon, given: dict[str, Any] | None = None) -> ReloadResult:
    """Re-read, validate and apply the config file (module docstring), or the configuration ``given``
    as data (a worker: the daemon's). A bad file, or a new transport that fails to start, raises
    ConfigError and changes nothing. Either way one line says what came of it, whoever asked (SIGHUP,
    the control socket, the daemon for its workers)."""
    try:
        result = await _reload(daemon, given)
    except ConfigError as exc:
        log.warning("reload refused; keeping the running configuration", problems=exc.problems)
        raise
    log.info(
        "configuration reloaded",
        applied=result.applied,
        restart_needed=result.restart_needed,
        not_applied=result.not_applied,
    )
    return result


async def _reload(daemon: Daemon, given: dict[str, Any] | None) -> ReloadResult:
    async with daemon.reloading:
        if given is None:
            loaded = load_config(daemon.source, daemon.registry)
        else:
            loaded = parse_config(given, daemon.source, daemon.registry)
        # validates and checks all of it (a worker: not the line it has just read)
        fresh = build(loaded, daemon.registry, source=daemon.source, worker=daemon.worker)
        running = daemon.config
        changed = changed_keys(running.model_dump(), loaded.model_dump())
        restart = [key for key in changed if _restart_only(key)]
        config = _keeping_running(running, loaded)
        # the daemon: what its running workers are sent (not by the file's count)
        if not daemon.worker and (problems := line_problems(config)):
            raise ConfigError(problems, daemon.source)
        plan = plan_transports(running, config)
        spooler = daemon.spooler
        slots, problems = open_transports(
            config, daemon.registry, daemon.stores, spooler.clock, {*plan.added, *plan.changed}
        )
        if problems:
            raise ConfigError(problems, daemon.source)
        try:
            await start_transports([slot.transport for slot in slots])
        except ConfigError as exc:
            raise ConfigError(exc.problems, daemon.source) from exc
        except Exception as exc:
            names = ", ".join(slot.name for slot in slots)
            problem = f"transports: could not start {names}: {type(exc).__name__}: {exc}"
            raise ConfigError([problem], daemon.source) from exc

        _switch(daemon, config, fresh, plan, slots)  # one step for every attempt and command
        for listener in daemon.on_reload:
            listener(config)
        daemon.config = config
        spooler.wake()
        applied = _log_applied(changed, plan, config)
        if restart:
            log.warning("restart needed to apply", keys=restart)
        # begun, these end: a client that asked and went away, or lost its rights by this very
        # reload, must not leave a listener half moved (each bind is bounded: ``BIND_TIMEOUT``)
        with anyio.CancelScope(shield=True):
            not_applied = [problem for apply in daemon.apply_on_reload for problem in await apply(config)]
        return ReloadResult(applied, restart, not_applied)


def _switch(
    daemon: Daemon, config: Config, fresh: Daemon, plan: TransportPlan, slots: Sequence[TransportSlot]
) -> None:
    """The reload's switch to ``config``, with nothing awaited: the new transports ``slots`` (started)
    in, the retired ones stopped once their attempts end, and the delivery settings of ``fresh``."""
    configure_logging(config.log)
    spooler = daemon.spooler
    dispatcher = spooler.dispatcher
    running_slots = {slot.name: slot for slot in dispatcher.transports}
    built = {slot.name: slot for slot in slots}
    for name in plan.changed:  # an operator's offline survives a change of settings (its destinations
        old, new = running_slots[name].resource, built[name].resource  # may not: they start afresh)
        if not old.online:
            new.online, new.since = False, old.since
        # and so do its counts: shared, so the attempts still in flight on the old one count too
        built[name].counters = running_slots[name].counters
    retired = [running_slots[name] for name in (*plan.removed, *plan.changed)]
    for slot in retired:
        spooler.stop_receiving(slot.name)
    current = [built.get(name) or running_slots[name] for name in config.transports]
    dispatcher.replace_transports(current)
    daemon.transports = [slot.transport for slot in current]
    dispatcher.coupled = coupled_transports(config, daemon.transports)
    for slot in slots:
        if slot.downloader is not None:
            spooler.start_receiving(slot.name, slot.downloader)
    if retired:
        spooler.spawn(lambda: _retire(spooler.in_flight_now(), [slot.transport for slot in retired]))

    dispatcher.settings = delivery_settings(config)
    dispatcher.preprocessors = fresh.spooler.dispatcher.preprocessors
    dispatcher.destinations.hold = config.spooler.retry.destination_hold
    spooler.max_in_flight = config.spooler.in_flight(daemon.worker)
    spooler.flush_in_flight = config.spooler.equal_share
    daemon.submitter.preprocess = fresh.submitter.preprocess


def _log_applied(changed: Sequence[str], plan: TransportPlan, config: Config) -> list[str]:
    """One log line per applied change (key names only: a value may be a secret's location or worse)."""
    applied: list[str] = []
    for name in plan.added:
        log.info("transport added", transport=name, provider=config.transports[name].provider)
        applied.append(f"transports.{name} added")
    for name in plan.changed:
        keys = [k.removeprefix(f"transports.{name}.") for k in changed if k.startswith(f"transports.{name}.")]
        keys = keys or ["spooler.transport_concurrency"]
        log.info("transport changed", transport=name, keys=keys)
        applied.append(f"transports.{name} changed ({', '.join(keys)})")
    for name in plan.removed:
        log.info("transport removed", transport=name)
        applied.append(f"transports.{name} removed")
    if plan.reordered:
        log.info("transport order changed", order=list(config.transports))
        applied.append("transports reordered")
    for key in changed:
        if not key.startswith("transports.") and not _restart_only(key):
            log.info("setting changed", key=key)
            applied.append(key)
    return applied


async def _retire(attempts: Sequence[asyncio.Event], transports: Sequence[Transport]) -> None:
    """Stop transports a reload replaced once the attempts that may still use them have ended (or at
    shutdown, which cancels the wait)."""
    try:
        for done in attempts:
            await done.wait()
    finally:
        with anyio.CancelScope(shield=True):
            await stop_transports(transports)
            for transport in transports:
                log.info("transport stopped", transport=transport.name, reason="replaced by a reload")

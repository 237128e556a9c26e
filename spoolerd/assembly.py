"""Assembling a spooler from a validated config: stores, transports, preprocessors, the engine.

``build`` makes every object without starting anything, so ``spoolerd check-config`` can report every
problem (of the frame and of each plugin's own section) at once; ``daemon.running`` starts and stops them
in order. Nothing here names a store or transport module: they all come from the registry.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import anyio
import structlog

from .abilities import checker
from .config import Config, open_stores
from .control.access import access_problems  # a face's settings, checked as config: not its server
from .delivery import DeliverySettings, Dispatcher
from .errors import ConfigError, PluginError, SpoolerError
from .fsutil import unwritable
from .host import ReloadResult, SetOnline, StatusRows
from .listener.check import listener_problems  # a face's files, checked as config: not its server
from .plugins import PluginRegistry, self_check
from .preprocess import Preprocessor
from .retention import SentKeeper
from .retry import RetryPolicy
from .routing import SenderRoutes
from .shared_state import SharedState
from .slot import TransportSlot
from .spooler import Spooler
from .store import Clock, MessageStore
from .submission import Submitter
from .submit_rules import bounce_copy_recipients
from .transport import Transport, TransportContext
from .webhooks.service import Webhooks, webhook_problems
from .worker_channel import line_problems

if TYPE_CHECKING:
    from prometheus_client import Histogram

__all__ = [
    "Daemon",
    "build",
    "coupled_transports",
    "delivery_settings",
    "lease_owner",
    "open_transports",
    "start_transports",
    "stop_transports",
]

log = structlog.get_logger("spoolerd.daemon")


async def _not_running() -> ReloadResult:
    raise SpoolerError("the daemon is not running: nothing to reload")


@dataclass(slots=True)
class Daemon:
    """Everything a configured daemon is made of (the ``Host`` its faces are handed)."""

    config: Config
    stores: dict[str, MessageStore]
    default_store: str
    transports: list[Transport]
    spooler: Spooler
    submitter: Submitter
    source: str | None = None  # the config file, read again on reload
    registry: PluginRegistry = field(default_factory=PluginRegistry)
    on_reload: list[Callable[[Config], None]] = field(default_factory=list)
    # faces whose changes await (a listener binding its address): after the switch, before the answer;
    # each returns what it could not apply
    apply_on_reload: list[Callable[[Config], Awaitable[list[str]]]] = field(default_factory=list)
    on_set_online: list[SetOnline] = field(default_factory=list)  # an operator's online/offline, passed on
    keepers: dict[str, SentKeeper] = field(default_factory=dict)  # Sent Items retention, per store
    reloading: asyncio.Lock = field(default_factory=asyncio.Lock)  # one reload at a time
    status_rows: list[StatusRows] = field(default_factory=list)  # faces' rows
    on_stop: list[Callable[[float], Awaitable[None]]] = field(default_factory=list)  # stop intake first
    store_timings: Histogram | None = None  # with [metrics]: every store call's latency (TimedStore)
    reload: Callable[[], Awaitable[ReloadResult]] = _not_running  # ``running`` sets it (reconfigure.reload)
    webhooks: Webhooks | None = None  # [webhooks]: their senders
    worker: bool = False  # a delivery worker (spoolerd/workers.py), not the daemon


def build(
    config: Config,
    registry: PluginRegistry,
    *,
    clock: Clock = time.time,
    source: str | None = None,
    worker: bool = False,
) -> Daemon:
    """Every configured object, validated and built but not started (a ConfigError lists all problems);
    ``worker``: for a delivery worker (spoolerd/workers.py)."""
    problems: list[str] = []
    try:
        opened = open_stores(config, registry, clock=clock, source=source)
        stores, default = opened.stores, opened.default
    except ConfigError as exc:
        problems.extend(exc.problems)
        stores, default = {}, config.spooler.default_store
    state_dir = unwritable(str(config.spooler.state_dir), directory=True)
    if state_dir is not None:
        problems.append(f"spooler.state_dir: {state_dir}")
    for name, store in stores.items():
        try:
            problems.extend(self_check(checker(store, f"stores.{name}"), f"stores.{name}"))
        except PluginError as exc:
            problems.append(f"stores.{name}.provider: {exc}")
    store_timings = None
    if config.metrics.address is not None:
        from .metrics.timing import store_histogram, timed_stores  # only a daemon serving metrics

        store_timings = store_histogram()
        stores = timed_stores(stores, store_timings)

    slots, transport_problems = open_transports(config, registry, stores, clock)
    problems.extend(transport_problems)
    transports = [slot.transport for slot in slots]

    preprocessors = _preprocessors(config, registry, problems)
    for name, section in config.listeners.items():
        problems.extend(listener_problems(name, section))
    problems.extend(webhook_problems(config.webhooks, stores))
    problems.extend(_shared_budget_problems(config, stores.get(default)))
    problems.extend(access_problems(config.control))
    if not worker:  # a worker has just read the line (the daemon checked it before sending)
        problems.extend(line_problems(config))
    if problems:
        raise ConfigError(problems, source)

    spooler_cfg = config.spooler
    settings = delivery_settings(config)
    owner = lease_owner(config.spooler.state_dir)
    dispatcher = Dispatcher(
        slots, preprocessors, settings, owner=owner, clock=clock, budget_store=stores.get(default)
    )
    spooler = Spooler(stores, dispatcher, max_in_flight=spooler_cfg.in_flight(worker), clock=clock)
    spooler.flush_in_flight = spooler_cfg.equal_share
    dispatcher.coupled = coupled_transports(config, transports)
    preprocess = bool(preprocessors or config.lists or any(slot.preprocessors for slot in slots))
    submitter = Submitter(stores, preprocess=preprocess, dispatcher=dispatcher, spooler=spooler)
    daemon = Daemon(config, stores, default, transports, spooler, submitter, source, registry, worker=worker)
    daemon.store_timings = store_timings
    if config.webhooks:
        daemon.webhooks = Webhooks(
            config.webhooks, stores, owner=owner, clock=clock, others_write=config.spooler.workers > 1
        )
        dispatcher.webhooks = daemon.webhooks.events
    return daemon


def _shared_budget_problems(config: Config, budgets: MessageStore | None) -> list[str]:
    """Delivery workers spend one rate budget only in a store that updates it in one step
    (spoolerd/shared_state.py); a default store that cannot would let each process spend its own."""
    if config.spooler.workers == 1 or budgets is None or isinstance(budgets, SharedState):
        return []
    provider = config.stores[config.spooler.default_store].provider
    why = f"spooler.workers > 1 needs a default store that keeps one budget for all ({provider!r} does not)"
    transports = config.transports.items()
    problems = [f"transports.{name}.rate: {why}" for name, t in transports if t.rate is not None]
    problems += [
        f"transports.{name}.relay_rates: {why}" for name, t in transports if t.options().get("relay_rates")
    ]
    return problems


def _preprocessors(config: Config, registry: PluginRegistry, problems: list[str]) -> list[Preprocessor]:
    """The entry-point preprocessors ``[spooler] preprocessors`` names, built and checked."""
    preprocessors: list[Preprocessor] = []
    for name in config.spooler.preprocessors:
        try:
            preprocessor = registry.preprocessor(name, config.preprocessors.get(name))
            check = checker(preprocessor, f"preprocessors.{name}")
        except PluginError as exc:
            problems.append(f"spooler.preprocessors: {exc}")
            continue
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        problems.extend(self_check(check, f"preprocessors.{name}"))
        preprocessors.append(preprocessor)
    return preprocessors


def open_transports(
    config: Config,
    registry: PluginRegistry,
    stores: Mapping[str, MessageStore],
    clock: Clock,
    names: Collection[str] | None = None,
) -> tuple[list[TransportSlot], list[str]]:
    """Build (and ``check``, but not start) the configured transports, or those in ``names``, in config
    order, each in its slot; and every problem found."""
    problems: list[str] = []
    slots: list[TransportSlot] = []
    addresses = {name: tuple(section.addresses) for name, section in config.stores.items()}
    for name, section in config.transports.items():
        if names is not None and name not in names:
            continue
        context = TransportContext(
            name,
            stores,
            addresses,
            clock,
            config.spooler.default_store,
            destination_hold=config.spooler.retry.destination_hold,
        )
        try:
            opened = registry.open_transport(section.provider, section.options(), context)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        except PluginError as exc:
            problems.append(f"transports.{name}.provider: {exc}")
            continue
        problems.extend(self_check(opened.abilities.check, f"transports.{name}"))
        limit = section.concurrency or config.spooler.transport_concurrency
        slot = TransportSlot(opened.transport, asyncio.Semaphore(limit), opened.abilities, rate=section.rate)
        slots.append(slot)
    return slots, problems


def coupled_transports(config: Config, transports: Sequence[Transport]) -> dict[str, str]:
    """Each store's ``coupled_transport`` (a transport's name), by store name."""
    names = {t.name for t in transports}
    return {
        name: section.coupled_transport
        for name, section in config.stores.items()
        if section.coupled_transport is not None and section.coupled_transport in names
    }


async def start_transports(transports: Sequence[Transport]) -> None:
    """Start each in order; if one fails, stop those already started and raise."""
    started: list[Transport] = []
    try:
        for transport in transports:
            await transport.start()
            started.append(transport)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await stop_transports(started)
        raise


async def stop_transports(transports: Sequence[Transport]) -> None:
    """Stop each, last first; one that fails to stop is logged and does not keep the rest running."""
    for transport in reversed(transports):
        try:
            await transport.stop()
        except Exception:
            log.exception("transport failed to stop", transport=transport.name)


def lease_owner(state_dir: Path) -> str:
    """The name this daemon's leases carry. One daemon per state directory (``running`` holds its lock
    file), so it is stable across restarts: at start the daemon takes back what its previous life held
    (``MessageStore.reclaim``). The path is quoted so that ``#``, which starts a sub-owner's suffix (a
    coupled hand-over's), never appears in it: no daemon's name is another's sub-owner."""
    return f"spoolerd@{socket.gethostname()}:{quote(os.path.abspath(state_dir))}"


def delivery_settings(config: Config) -> DeliverySettings:
    spooler_cfg, retry = config.spooler, config.spooler.retry
    return DeliverySettings(
        lease=spooler_cfg.lease,
        send_timeout=spooler_cfg.send_timeout,
        destination_concurrency=spooler_cfg.destination_concurrency,
        destination_hold=retry.destination_hold,
        reporting_mta=spooler_cfg.reporting_mta,
        report_original_limit=spooler_cfg.report_original_limit,
        retry=RetryPolicy(retry.initial, retry.maximum, 2.0, retry.give_up_after, retry.min_hint),
        lists=config.lists,
        delay_warning_after=spooler_cfg.delay_warning_after,
        bounce_copy_to=bounce_copy_recipients(config),
        sender_routes=SenderRoutes(config.sender_routes),
    )

"""Control commands: a table of plain async functions over the running daemon (no sockets here).

Each command validates its ``args`` with its own pydantic model, so a wrong type or an unknown argument
is a ``bad_args`` error naming the field; store and spooler errors keep their own stable codes. The
``submit`` command is in submit.py, the folder commands in folders.py, what every command shares in base.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

import structlog
from pydantic import ValidationError

from .. import __version__
from ..host import Host
from ..resource_state import FLUSH
from ..spooler_results import FlushDeferral
from ..transport import Direction
from .access import USER_COMMANDS
from .base import Args, CommandError, Connection, IdArgs, StoreArgs, named_slot, named_store
from .entries import entry_row, flushed_transport, targeted_transport
from .folders import ListArgs, PurgeArgs, fetch, list_folder, purge, remove
from .results import (
    Aborted,
    CommandResult,
    DeferralRow,
    FlushCounts,
    FlushStarted,
    Held,
    OnlineState,
    Pong,
    QueueRow,
    Reloaded,
    StatusRow,
    Unsubscribed,
)
from .status import queue_listing, status_table
from .submit import SubmitArgs, submit
from .subscribe import stream_events
from .verify import Unverifiable, Verified, verify_addresses, verifying_sender

log = structlog.get_logger("spoolerd.control")

__all__ = ["COMMANDS", "CommandError", "Connection", "run_command"]


async def ping(daemon: Host, args: Args, conn: Connection) -> Pong:
    return {"pong": True, "version": __version__}


class StatusArgs(Args):
    entry: str | None = None  # one row, by its entry id


async def status(daemon: Host, args: StatusArgs, conn: Connection) -> list[StatusRow]:
    if args.entry is not None:
        return [await entry_row(daemon, args.entry)]
    return await status_table(daemon)


class QueueArgs(StoreArgs):
    ids: list[str] | None = None


async def queue(daemon: Host, args: QueueArgs, conn: Connection) -> list[QueueRow]:
    names = [args.store] if args.store else list(daemon.stores)
    stores = [named_store(daemon, name) for name in names]
    return await queue_listing(daemon, stores, args.ids, subjects=conn.admin)


class FlushArgs(Args):
    direction: Literal["upload", "download", "both"] = "both"
    transport: str | None = None
    entry: str | None = None  # a status row's entry id: the spooler's, or a transport's
    ids: list[str] | None = None
    force: bool = False
    wait: bool = True


def _deferral_row(waiting: FlushDeferral) -> DeferralRow:
    d = waiting.recipient.update
    return {"id": waiting.message_id, "store": waiting.store, "recipient": waiting.recipient.address,
            "code": d.code, "status": d.status, "reason": d.text or ""}  # fmt: skip


async def flush(daemon: Host, args: FlushArgs, conn: Connection) -> FlushCounts | FlushStarted:
    if args.entry is not None:
        if args.transport is not None:
            raise CommandError("bad_args", "name the transport or its entry, not both")
        args.transport = await flushed_transport(daemon, args.entry)
    if args.transport is not None:
        named_slot(daemon, args.transport)
    spooler = daemon.spooler
    flushed = [s.resource for s in spooler.dispatcher.transports if args.transport in (None, s.name)]

    async def run() -> FlushCounts:
        with spooler.status.working([spooler.resource, *flushed], FLUSH):  # the rows show flushing
            return await flush_now()

    async def flush_now() -> FlushCounts:
        counts = FlushCounts(sent=0, deferred=0, failed=0, received=0)
        if args.direction in ("download", "both"):
            received_before = daemon.spooler.counters.received
            for slot in daemon.spooler.dispatcher.transports:
                if slot.flush is not None and args.transport in (None, slot.name):
                    await slot.flush(Direction.DOWNLOAD)
                elif slot.downloader is not None and args.transport in (None, slot.name):
                    # no flush of its own: flushed through the spooler (seed 000, lpTargetTransport)
                    await daemon.spooler.download_now(slot.name, slot.downloader)
            counts["received"] = daemon.spooler.counters.received - received_before
        if args.direction in ("upload", "both"):
            result = await daemon.spooler.flush(
                force=args.force, message_ids=args.ids, transport=args.transport
            )
            counts["sent"], counts["deferred"], counts["failed"] = result.sent, result.deferred, result.failed
            counts["deferrals"] = [_deferral_row(d) for d in result.deferrals]  # why each still waits
        return counts

    if args.wait:
        return await run()
    daemon.spooler.spawn(run)  # FLUSH_ASYNC_OK: answer now, flush in the background
    return FlushStarted(started=True)


async def abort(daemon: Host, args: IdArgs, conn: Connection) -> Aborted:
    name, store = named_store(daemon, args.store)
    await store.abort_submit(args.id)
    # off the queue, no report: as MAPI's AbortSubmit
    log.info("message aborted", store=name, queue_id=args.id)
    return {"id": args.id, "aborted": True}


async def hold(daemon: Host, args: IdArgs, conn: Connection) -> Held:
    name, store = named_store(daemon, args.store)
    await store.hold(args.id, True)
    log.info("message held", store=name, queue_id=args.id)
    return {"id": args.id, "held": True}


async def release(daemon: Host, args: IdArgs, conn: Connection) -> Held:
    name, store = named_store(daemon, args.store)
    await store.hold(args.id, False)
    log.info("message released", store=name, queue_id=args.id)
    daemon.spooler.wake()
    return {"id": args.id, "held": False}


async def reload_config(daemon: Host, args: Args, conn: Connection) -> Reloaded:
    result = await daemon.reload()  # a ConfigError (code bad_config) leaves the running config as it was
    return {
        "reloaded": True,
        "applied": result.applied,
        "restart_needed": result.restart_needed,
        "not_applied": result.not_applied,
    }


class TransportArgs(Args):
    transport: str | None = None
    entry: str | None = None  # or its status row's entry id


async def online(daemon: Host, args: TransportArgs, conn: Connection) -> OnlineState:
    return await _set_online(daemon, args, True)


async def offline(daemon: Host, args: TransportArgs, conn: Connection) -> OnlineState:
    return await _set_online(daemon, args, False)


async def _set_online(daemon: Host, args: TransportArgs, online: bool) -> OnlineState:
    """In the daemon, then in every delivering process it tells (its workers, spoolerd/workers.py)."""
    name = named_slot(daemon, await targeted_transport(daemon, args.transport, args.entry)).name
    daemon.spooler.set_online(name, online)
    for tell in daemon.on_set_online:
        tell(name, online)
    return {"transport": name, "online": online}


async def subscribe(daemon: Host, args: StoreArgs, conn: Connection) -> Unsubscribed:
    """Stream events to the client until it hangs up (or falls too far behind reading them)."""
    names = [args.store] if args.store else list(daemon.stores)
    stores = {name: named_store(daemon, name)[1] for name in names}
    await stream_events(daemon.spooler.events, stores, args.store, conn.send_event, conn.closed)
    return Unsubscribed(subscribed=False)


class VerifyArgs(Args):
    addresses: list[str]
    sender: str | None = None  # routes as for mail from this sender ([sender_routes])


async def verify(daemon: Host, args: VerifyArgs, conn: Connection) -> list[Verified | Unverifiable]:
    sender = verifying_sender(daemon.config, conn.uid, args.sender)
    return verify_addresses(daemon.config, daemon.spooler.dispatcher.transports, args.addresses, sender)


Handler = Callable[[Host, Any, Connection], Awaitable[CommandResult]]
COMMANDS: dict[str, tuple[type[Args], Handler]] = {
    "ping": (Args, ping),
    "status": (StatusArgs, status),
    "queue": (QueueArgs, queue),
    "submit": (SubmitArgs, submit),
    "flush": (FlushArgs, flush),
    "abort": (IdArgs, abort),
    "hold": (IdArgs, hold),
    "release": (IdArgs, release),
    "online": (TransportArgs, online),
    "offline": (TransportArgs, offline),
    "list": (ListArgs, list_folder),
    "fetch": (IdArgs, fetch),
    "rm": (IdArgs, remove),
    "purge": (PurgeArgs, purge),
    "subscribe": (StoreArgs, subscribe),
    "reload": (Args, reload_config),
    "verify": (VerifyArgs, verify),
}


async def run_command(daemon: Host, cmd: str, raw_args: dict[str, Any], conn: Connection) -> CommandResult:
    """Run one command; every failure is a CommandError or SpoolerError with a stable code."""
    entry = COMMANDS.get(cmd)
    if entry is None:
        raise CommandError("unknown_command", f"no command {cmd!r} (known: {', '.join(sorted(COMMANDS))})")
    model, handler = entry
    if not conn.admin and cmd not in USER_COMMANDS:
        raise CommandError(
            "forbidden",
            f"{cmd} is for the daemon's administrators (root, its own user, [control] admin_uids and"
            " admin_groups); this user may submit, list the queue, flush it, see the status and verify",
        )
    if conn.body is not None and cmd != "submit":
        raise CommandError("bad_request", f"{cmd} takes no body")
    try:
        args = model.model_validate(raw_args)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'args'}: {err['msg']}" for err in exc.errors()
        )
        # not chained: pydantic's error quotes the values given (a message, addresses), which are the
        # client's to see in the answer, not a log's
        raise CommandError("bad_args", problems) from None
    return await handler(daemon, args, conn)

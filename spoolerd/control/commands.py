"""Control commands: a table of plain async functions over the running daemon (no sockets here).

Each command validates its ``args`` with its own pydantic model, so a wrong type or an unknown argument
is a ``bad_args`` error naming the field; store and spooler errors keep their own stable codes.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import __version__, maillog
from ..dsn_params import DsnRequest
from ..duration import format_duration
from ..errors import SpoolerError, Submitted
from ..host import Host
from ..message import FolderRole, flag_names
from ..message_size import check_message_size
from ..retention import filing
from ..slot import TransportSlot
from ..spooler import FlushDeferral
from ..store import MessageStore
from ..submission import outgoing_draft
from ..submit_rules import Envelope, SubmissionRequest, complete_submission, trusted
from ..transport import Direction
from .results import (
    Aborted,
    CommandResult,
    ControlEvent,
    DeferralRow,
    Fetched,
    FlushCounts,
    FlushStarted,
    FolderRow,
    Held,
    OnlineState,
    Pong,
    PurgeResult,
    QueueRow,
    Reloaded,
    Removed,
    StatusRow,
    SubmitResult,
    Unsubscribed,
)
from .status import queue_listing, status_table
from .subscribe import stream_events
from .verify import Unverifiable, Verified, verify_addresses

__all__ = ["COMMANDS", "CommandError", "Connection", "run_command"]

log = structlog.get_logger("spoolerd.control")


class CommandError(SpoolerError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Connection:
    """What a command may know of the client that sent it."""

    uid: int
    send_event: Callable[[ControlEvent], Awaitable[None]]
    closed: anyio.Event
    body: bytes | None = None  # raw bytes that followed the request line (``submit``'s message)


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _StoreArgs(_Args):
    store: str | None = None


def _store(daemon: Host, name: str | None) -> tuple[str, MessageStore]:
    chosen = name or daemon.default_store
    store = daemon.stores.get(chosen)
    if store is None:
        raise CommandError("unknown_store", f"no store named {chosen!r}")
    return chosen, store


def _slot(daemon: Host, name: str) -> TransportSlot:
    slot = daemon.spooler.dispatcher.slot(name)
    if slot is None:
        raise CommandError("unknown_transport", f"no transport named {name!r}")
    return slot


# ---------------------------------------------------------------------- commands


async def ping(daemon: Host, args: _Args, conn: Connection) -> Pong:
    return {"pong": True, "version": __version__}


async def status(daemon: Host, args: _Args, conn: Connection) -> list[StatusRow]:
    return await status_table(daemon)


class QueueArgs(_StoreArgs):
    ids: list[str] | None = None


async def queue(daemon: Host, args: QueueArgs, conn: Connection) -> list[QueueRow]:
    names = [args.store] if args.store else list(daemon.stores)
    return await queue_listing(daemon, [_store(daemon, name) for name in names], args.ids)


class SubmitArgs(_StoreArgs):
    message: str | None = None  # base64 RFC 5322; or none, and the message follows as the request's body
    sender: str | None = None
    recipients: list[str] | None = None  # none: To, Cc and Bcc of the message (sendmail -t)
    full_name: str | None = None  # the name in the From field added to a message without one
    not_before: float | None = None
    sentmail: bool = True  # file the sent message in Sent Items
    delete_after_submit: bool = False
    ndr: bool = True  # a non-delivery report if a recipient fails (sendmail -N never: off)
    dr: bool = False  # a delivery report once delivered (sendmail -N success)
    priority: Literal[-1, 0, 1] | None = None  # PR_PRIORITY; none: what the message's header asks for
    ret: str | None = None  # RFC 3461 DSN parameters (dsn_params.DsnRequest.parsed): RET, ENVID,
    envid: str | None = None
    notify: str | None = None  # NOTIFY for every recipient,
    recipient_dsn: dict[str, dict[str, str]] | None = None  # NOTIFY/ORCPT by recipient as given


def _envelope(daemon: Host, content: bytes, args: SubmitArgs, conn: Connection) -> Envelope:
    trusts = trusted(daemon.config, conn.uid, os.getuid())
    dsn = DsnRequest.parsed(args.ret, args.envid, args.notify, args.recipient_dsn)  # InvalidArgument
    request = SubmissionRequest(content, args.sender, args.recipients, conn.uid, trusts, args.full_name, dsn)
    return complete_submission(daemon.config, request)  # the same rules as sendmail's direct path


def _submitted_content(args: SubmitArgs, conn: Connection) -> bytes:
    """The message: the request's body, or base64 in ``message`` (one or the other)."""
    if (args.message is None) == (conn.body is None):
        raise CommandError("bad_args", "message: give it base64 in 'message' or as the request's body")
    if conn.body is not None:
        return conn.body
    assert args.message is not None
    try:
        return base64.b64decode(args.message, validate=True)
    except binascii.Error as exc:
        raise CommandError("bad_args", f"message: not base64: {exc}") from exc


async def submit(daemon: Host, args: SubmitArgs, conn: Connection) -> SubmitResult:
    name, store = _store(daemon, args.store)
    content = _submitted_content(args, conn)
    check_message_size(len(content), daemon.config.spooler.message_size_limit)
    env = _envelope(daemon, content, args, conn)  # BadAddress, NoRecipients: refused, nothing stored
    content, sender, subject, recipients = env.content, env.sender, env.subject, env.recipients
    filed = filing(
        daemon.config.stores[name].sent_copies,
        sentmail=args.sentmail,
        delete_after_submit=args.delete_after_submit,
    )
    draft = await outgoing_draft(
        store,
        content,
        recipients,
        sender=sender,
        subject=subject,
        sentmail=filed.sentmail,
        delete_after_submit=filed.delete_after_submit,
        not_before=args.not_before,
        ndr_requested=args.ndr,
        dr_requested=args.dr,
        priority=args.priority,
        dsn=env.dsn,
    )
    result = await daemon.submitter.submit_new(name, draft)  # created and queued durably before we answer
    message_id = result.message_id
    maillog.accepted(
        queue_id=message_id,
        store=name,
        content=content,
        sender=sender,
        recipients=len(recipients),
        via="socket",
    )
    return {"id": message_id, "store": name, "queued": result.queued, "recipients": len(recipients)}


class FlushArgs(_Args):
    direction: Literal["upload", "download", "both"] = "both"
    transport: str | None = None
    ids: list[str] | None = None
    force: bool = False
    wait: bool = True


def _deferral_row(waiting: FlushDeferral) -> DeferralRow:
    d = waiting.recipient.update
    return {"id": waiting.message_id, "store": waiting.store, "recipient": waiting.recipient.address,
            "code": d.code, "status": d.status, "reason": d.text or ""}  # fmt: skip


async def flush(daemon: Host, args: FlushArgs, conn: Connection) -> FlushCounts | FlushStarted:
    if args.transport is not None:
        _slot(daemon, args.transport)

    async def run() -> FlushCounts:
        counts = FlushCounts(sent=0, deferred=0, failed=0, received=0)
        if args.direction in ("download", "both"):
            received_before = daemon.spooler.counters.received
            for slot in daemon.spooler.dispatcher.transports:
                if slot.flush is not None and args.transport in (None, slot.name):
                    await slot.flush(Direction.DOWNLOAD)
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


class IdArgs(_StoreArgs):
    id: str


async def abort(daemon: Host, args: IdArgs, conn: Connection) -> Aborted:
    _, store = _store(daemon, args.store)
    await store.abort_submit(args.id)
    return {"id": args.id, "aborted": True}


async def hold(daemon: Host, args: IdArgs, conn: Connection) -> Held:
    _, store = _store(daemon, args.store)
    await store.hold(args.id, True)
    return {"id": args.id, "held": True}


async def release(daemon: Host, args: IdArgs, conn: Connection) -> Held:
    _, store = _store(daemon, args.store)
    await store.hold(args.id, False)
    daemon.spooler.wake()
    return {"id": args.id, "held": False}


async def reload_config(daemon: Host, args: _Args, conn: Connection) -> Reloaded:
    result = await daemon.reload()  # a ConfigError (code bad_config) leaves the running config as it was
    return {"reloaded": True, "applied": result.applied, "restart_needed": result.restart_needed}


class TransportArgs(_Args):
    transport: str


async def online(daemon: Host, args: TransportArgs, conn: Connection) -> OnlineState:
    _slot(daemon, args.transport)
    daemon.spooler.set_online(args.transport, True)
    return {"transport": args.transport, "online": True}


async def offline(daemon: Host, args: TransportArgs, conn: Connection) -> OnlineState:
    _slot(daemon, args.transport)
    daemon.spooler.set_online(args.transport, False)
    return {"transport": args.transport, "online": False}


class ListArgs(_StoreArgs):
    folder: str = "inbox"  # a role (inbox, outbox, sent, drafts, deleted) or a folder id


async def _folder_id(store: MessageStore, folder: str) -> str:
    """A folder named by its role (inbox, outbox, sent, drafts, deleted) or by its id."""
    try:
        return (await store.folder(FolderRole(folder))).id
    except ValueError:
        return folder


async def list_folder(daemon: Host, args: ListArgs, conn: Connection) -> list[FolderRow]:
    _, store = _store(daemon, args.store)
    rows = await store.list_messages(await _folder_id(store, args.folder))
    return [
        {
            "id": r.id,
            "class": r.message_class,
            "flags": int(r.flags),
            "sender": r.sender,
            "subject": r.subject,
            "size": r.size,
            "time": r.time,
        }
        for r in rows
    ]


async def fetch(daemon: Host, args: IdArgs, conn: Connection) -> Fetched:
    _, store = _store(daemon, args.store)
    message = await store.open(args.id)  # read access: NoAccess while the spooler holds it
    return {
        "id": message.id,
        "class": message.message_class,
        "flags": flag_names(message.flags),
        "priority": message.priority,
        "not_before": message.not_before,
        "ndr_requested": message.ndr_requested,
        "dr_requested": message.dr_requested,
        "content": base64.b64encode(message.content).decode(),
    }


async def remove(daemon: Host, args: IdArgs, conn: Connection) -> Removed:
    name, store = _store(daemon, args.store)
    try:
        await store.delete(args.id)
    except Submitted as exc:
        raise Submitted(
            f"message {args.id} is queued: take it off the queue first (spoolerctl abort {args.id})"
        ) from exc
    log.info("message removed", store=name, id=args.id)
    return {"id": args.id, "store": name, "removed": True}


class PurgeArgs(_StoreArgs):
    folder: str  # a role or a folder id, as for list
    older_than: float = Field(ge=0, allow_inf_nan=False)  # seconds


async def purge(daemon: Host, args: PurgeArgs, conn: Connection) -> PurgeResult:
    name, store = _store(daemon, args.store)
    cutoff = daemon.spooler.clock() - args.older_than
    count = await store.purge(await _folder_id(store, args.folder), cutoff)
    keeper = daemon.keepers.get(name)
    if keeper is not None and count:
        await keeper.refresh()
    log.info("folder purged", store=name, folder=args.folder, count=count,
             older_than=format_duration(args.older_than), by="operator")  # fmt: skip
    return {"store": name, "folder": args.folder, "purged": count}


async def subscribe(daemon: Host, args: _StoreArgs, conn: Connection) -> Unsubscribed:
    """Stream events to the client until it hangs up (or falls too far behind reading them)."""
    names = [args.store] if args.store else list(daemon.stores)
    stores = {name: _store(daemon, name)[1] for name in names}
    await stream_events(daemon.spooler.events, stores, args.store, conn.send_event, conn.closed)
    return Unsubscribed(subscribed=False)


class VerifyArgs(_Args):
    addresses: list[str]


async def verify(daemon: Host, args: VerifyArgs, conn: Connection) -> list[Verified | Unverifiable]:
    return verify_addresses(daemon.config, daemon.spooler.dispatcher.transports, args.addresses)


Handler = Callable[[Host, Any, Connection], Awaitable[CommandResult]]
COMMANDS: dict[str, tuple[type[_Args], Handler]] = {
    "ping": (_Args, ping),
    "status": (_Args, status),
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
    "subscribe": (_StoreArgs, subscribe),
    "reload": (_Args, reload_config),
    "verify": (VerifyArgs, verify),
}


async def run_command(daemon: Host, cmd: str, raw_args: dict[str, Any], conn: Connection) -> CommandResult:
    """Run one command; every failure is a CommandError or SpoolerError with a stable code."""
    entry = COMMANDS.get(cmd)
    if entry is None:
        raise CommandError("unknown_command", f"no command {cmd!r} (known: {', '.join(sorted(COMMANDS))})")
    model, handler = entry
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

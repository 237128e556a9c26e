"""The commands on the messages in a store's folders: ``list``, ``fetch``, ``rm`` and ``purge``."""

from __future__ import annotations

import base64

import structlog
from pydantic import Field

from ..duration import format_duration
from ..errors import Submitted
from ..host import Host
from ..message import FolderRole, flag_names
from ..store import MessageStore
from .base import Connection, IdArgs, StoreArgs, named_store
from .results import Fetched, FolderRow, PurgeResult, Removed

__all__ = ["ListArgs", "PurgeArgs", "fetch", "list_folder", "purge", "remove"]

log = structlog.get_logger("spoolerd.control")


class ListArgs(StoreArgs):
    folder: str = "inbox"  # a role (inbox, outbox, sent, drafts, deleted) or a folder id


async def _folder_id(store: MessageStore, folder: str) -> str:
    """A folder named by its role (inbox, outbox, sent, drafts, deleted) or by its id."""
    try:
        return (await store.folder(FolderRole(folder))).id
    except ValueError:
        return folder


async def list_folder(daemon: Host, args: ListArgs, conn: Connection) -> list[FolderRow]:
    _, store = named_store(daemon, args.store)
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
    _, store = named_store(daemon, args.store)
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
    name, store = named_store(daemon, args.store)
    try:
        await store.delete(args.id)
    except Submitted as exc:
        raise Submitted(
            f"message {args.id} is queued: take it off the queue first (spoolerctl abort {args.id})"
        ) from exc
    log.info("message removed", store=name, queue_id=args.id)
    return {"id": args.id, "store": name, "removed": True}


class PurgeArgs(StoreArgs):
    folder: str  # a role or a folder id, as for list
    older_than: float = Field(ge=0, allow_inf_nan=False)  # seconds


async def purge(daemon: Host, args: PurgeArgs, conn: Connection) -> PurgeResult:
    name, store = named_store(daemon, args.store)
    cutoff = daemon.spooler.clock() - args.older_than
    count = await store.purge(await _folder_id(store, args.folder), cutoff)
    keeper = daemon.keepers.get(name)
    if keeper is not None and count:
        await keeper.refresh()
    log.info("folder purged", store=name, folder=args.folder, count=count,
             older_than=format_duration(args.older_than), by="operator")  # fmt: skip
    return {"store": name, "folder": args.folder, "purged": count}

"""The status table and the queue listing (``status``, ``queue``): rows built from the running daemon."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

from ..errors import NoAccess, NotFound, SpoolerError
from ..host import Host
from ..retention import retention_status
from ..store import MessageStore
from .holders import lease_holders, owned_by
from .results import QueueRecipient, QueueRow, SpoolerRow, StatusRow, StoreRow
from .waiting import waiting_row

__all__ = ["queue_listing", "status_table"]


async def status_table(daemon: Host) -> list[StatusRow]:
    """The status table (MAPI's): the spooler, each store, each transport, then the faces' rows."""
    spooler = daemon.spooler
    c = spooler.counters
    rows: list[StatusRow] = [
        SpoolerRow(
            {
                "resource_type": "spooler",
                "name": "spooler",
                "status": ["available"],
                "methods": ["flush"],
                "in_flight": spooler.in_flight,
                "counters": {
                    "sent": c.delivered,
                    "deferred": c.deferred,
                    "failed": c.failed,
                    "received": c.received,
                },
            }
        )
    ]
    for name, store in daemon.stores.items():
        health = spooler.health.states[name]
        section = daemon.config.stores[name]
        try:
            holders = await lease_holders(store, time.time())
            queued: int | None = holders.queued
        except SpoolerError:
            holders, queued = None, None  # unreadable: the row says why
        counters: dict[str, int | None] = {"queued": queued}
        if holders is not None:  # on a shared store, which daemon holds what (each daemon's owner name)
            here = spooler.dispatcher.owner
            mine = sum(n for owner, n in holders.leases.items() if owned_by(owner, here))
            counters |= {"locked_here": mine, "locked_elsewhere": sum(holders.leases.values()) - mine}
        rows.append(
            StoreRow(
                {
                    "resource_type": "store",
                    "name": name,
                    "provider": daemon.config.stores[name].provider,
                    "status": ["failure" if health.failing else "available"],
                    "methods": [],
                    "counters": counters,
                    "holders": None if holders is None else holders.leases,
                    "last_error": health.last_error,
                    "since": health.failing_since,
                    "retention": retention_status(
                        section.sent_retention, section.sent_copies, daemon.keepers.get(name)
                    ),
                }
            )
        )
    for slot in spooler.dispatcher.transports:
        row_status = [slot.availability, "outbound_enabled"]
        if slot.downloads:
            row_status.append("inbound_enabled")
        row: dict[str, Any] = {
            "resource_type": "transport",
            "name": slot.name,
            "provider": daemon.config.transports[slot.name].provider,
            "status": row_status,
            "methods": ["flush"] if slot.flush is not None else [],
            "address_types": None if slot.address_types is None else sorted(slot.address_types),
            "counters": dict(slot.counters),
            "last_error": slot.last_error,
            "since": slot.since or None,
        }
        rate = slot.rate_status(spooler.clock())
        if rate is not None:
            row["rate"] = rate
        extra = dict(slot.own_status())
        if extra:  # the transport's part: its flags, counters and details, and a newer error
            row_status.extend(f for f in extra.pop("status", []) if f not in row_status)
            row["counters"].update(extra.pop("counters", {}))
            error = extra.pop("last_error", None)
            if error is not None:
                row["last_error"] = error
            row.update(extra)
            if "failure" in row_status and "available" in row_status:  # failing as it says: not available
                row_status.remove("available")
        rows.append(row)
    for face_rows in daemon.status_rows:  # SMTP listeners
        rows.extend(face_rows())
    return rows


async def queue_listing(
    daemon: Host, stores: Sequence[tuple[str, MessageStore]], ids: Collection[str] | None
) -> list[QueueRow]:
    """The queued messages of ``stores`` (those in ``ids``), each recipient's state and what it waits for
    (what ``mailq`` shows)."""
    now = time.time()
    out = []
    for name, store in stores:
        async for entry in store.outgoing_queue():
            if ids is not None and entry.id not in ids:
                continue
            row: QueueRow = {
                "id": entry.id,
                "store": name,
                "age": max(0.0, now - entry.client_submit_time),
                "size": entry.size,
                "sender": entry.sender,
                "subject": entry.subject,
                "due_at": entry.due_at,
                "locked": entry.lock_owner is not None,
                "locked_by": entry.lock_owner,  # a daemon's owner name: which one is sending it
                "locked_here": owned_by(entry.lock_owner, daemon.spooler.dispatcher.owner),
                "held": entry.held,
                "priority": entry.priority,  # PR_PRIORITY: -1 non-urgent, 0 normal, 1 urgent
                "recipients": None,
            }
            try:
                message = await store.open(entry.id)
            except (NoAccess, NotFound):
                pass  # being delivered right now, or just finished
            else:
                row["recipients"] = [
                    QueueRecipient(
                        {
                            "address": r.address,
                            "state": r.state.value,
                            "attempts": r.attempts,
                            "last_code": r.last_code,
                            "last_status": r.last_status,
                            "last_text": r.last_text,
                            "transport": r.transport,
                            "next_attempt": r.next_attempt,
                            "waiting": waiting_row(daemon.spooler.dispatcher, r),
                        }
                    )
                    for r in message.recipients
                ]
            out.append(row)
    return out

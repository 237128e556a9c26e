"""The status table and the queue listing (``status``, ``queue``): rows built from the running daemon."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

from ..errors import NoAccess, NotFound, SpoolerError
from ..host import Host
from ..resource_state import ResourceState, entry_id
from ..retention import retention_status
from ..slot import TransportSlot
from ..store import MessageStore
from .holders import lease_holders, owned_by
from .results import QueueRecipient, QueueRow, SpoolerRow, StateFields, StatusRow, StoreRow
from .waiting import waiting_row

__all__ = ["queue_listing", "state_fields", "status_table"]


async def status_table(daemon: Host) -> list[StatusRow]:
    """The status table (MAPI's): the spooler, each store, each transport (and its relays, when it has
    several), then the faces' rows (SMTP listeners). Each row has its ``entry_id``, its ``state`` and
    since when, and its last error."""
    spooler = daemon.spooler
    c = spooler.counters
    rows: list[StatusRow] = [
        SpoolerRow(
            {
                "entry_id": spooler.resource.entry_id,
                "resource_type": "spooler",
                "name": "spooler",
                **state_fields(spooler.resource),
                "status": _flags(spooler.resource),
                "methods": ["flush", "status"],  # FlushQueues of any transport, and this table
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
        rows.append(await _store_row(daemon, name, store))
    for slot in spooler.dispatcher.transports:
        row = _transport_row(daemon, slot)
        rows.append(row)
        rows.extend(_relay_rows(slot, row.get("relays")))
    for face_rows in daemon.status_rows:  # SMTP listeners
        rows.extend(face_rows())
    return rows


def state_fields(record: ResourceState) -> StateFields:
    """A row's state: online / offline / active / flushing / failing, since when, and the last error."""
    return {"state": record.state, "since": record.since, "last_error": record.last_error,
            "failing_since": record.failing_since}  # fmt: skip


def _flags(record: ResourceState, *enabled: str) -> list[str]:
    """MAPI's STATUS_CODE bits: available / offline / failure, then what is enabled and under way."""
    busy = {"flushing": ["outbound_flush"], "active": ["outbound_active"]}.get(record.state, [])
    return [record.availability, *enabled, *busy]


async def _store_row(daemon: Host, name: str, store: MessageStore) -> StoreRow:
    spooler = daemon.spooler
    resource = spooler.health.states[name].resource
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
    coupled = section.coupled_transport  # PR_OWN_STORE_ENTRYID's other end: the transport it hands to
    return StoreRow(
        {
            "entry_id": resource.entry_id,
            "resource_type": "store",
            "name": name,
            "provider": section.provider,
            **state_fields(resource),
            "status": _flags(resource),
            "methods": ["status"],
            "coupled_transport": None if coupled is None else entry_id("transport", coupled),
            "counters": counters,
            "holders": None if holders is None else holders.leases,
            "retention": retention_status(
                section.sent_retention, section.sent_copies, daemon.keepers.get(name)
            ),
        }
    )


def _methods(slot: TransportSlot) -> list[str]:
    """RESOURCE_METHODS, honestly: what the transport itself does (a transport without ``flush`` is
    flushed through the spooler all the same)."""
    have = {"flush": slot.flush, "download": slot.downloader, "status": slot.abilities.status,
            "settings": slot.abilities.check}  # fmt: skip
    return [method for method, ability in have.items() if ability is not None]


def _transport_row(daemon: Host, slot: TransportSlot) -> dict[str, Any]:
    resource = slot.resource
    enabled = ["outbound_enabled", *(["inbound_enabled"] if slot.downloads else [])]
    row_status = _flags(resource, *enabled)
    own_store = [
        name for name, section in daemon.config.stores.items() if section.coupled_transport == slot.name
    ]
    row: dict[str, Any] = {
        "entry_id": resource.entry_id,
        "resource_type": "transport",
        "name": slot.name,
        "provider": daemon.config.transports[slot.name].provider,
        **state_fields(resource),
        "status": row_status,
        "methods": _methods(slot),
        "address_types": None if slot.address_types is None else sorted(slot.address_types),
        "own_store": [entry_id("store", name) for name in own_store],  # a coupled store's entry
        "counters": dict(slot.counters),
    }
    if resource.state != "failing":
        row["last_error"] = slot.last_error  # the latest problem a send reported
    rate = slot.rate_status(daemon.spooler.clock())
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
            row["state"] = "failing"
    return row


def _relay_rows(slot: TransportSlot, relays: object) -> list[dict[str, Any]]:
    """A row for each relay of a transport that has several (``relays`` of its own status): its state
    as the transport reported its changes (``slot.parts``), how long it is held as it says now."""
    if not isinstance(relays, list) or len(relays) < 2:
        return []
    rows = []
    for relay in relays:
        name = relay["relay"]
        record = slot.parts.get(name) or ResourceState("relay", f"{slot.name}/{name}")
        rows.append(
            {
                "entry_id": record.entry_id,
                "resource_type": "relay",
                "name": name,
                "transport": slot.resource.entry_id,
                **state_fields(record),
                "status": _flags(record),
                "methods": [],
                "retry_in": relay.get("retry_in"),
            }
        )
    return rows


async def queue_listing(
    daemon: Host, stores: Sequence[tuple[str, MessageStore]], ids: Collection[str] | None, *, subjects: bool
) -> list[QueueRow]:
    """The queued messages of ``stores`` (those in ``ids``), each recipient's state and what it waits for
    (what ``mailq`` shows); ``subjects``: each message's Subject too (for an administrator: a user who
    may list the queue sees its envelopes, as Postfix's mailq shows them, not what the mail says)."""
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
                "due_at": entry.due_at,
                "locked": entry.lock_owner is not None,
                "locked_by": entry.lock_owner,  # a daemon's owner name: which one is sending it
                "locked_here": owned_by(entry.lock_owner, daemon.spooler.dispatcher.owner),
                "held": entry.held,
                "priority": entry.priority,  # PR_PRIORITY: -1 non-urgent, 0 normal, 1 urgent
                "recipients": None,
            }
            if subjects:
                row["subject"] = entry.subject
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
                            "waiting": await waiting_row(daemon.spooler.dispatcher, entry.id, r),
                        }
                    )
                    for r in message.recipients
                ]
            out.append(row)
    return out

"""Status rows as command targets: each row's ``entry_id`` (MAPI's PR_ENTRYID of a status row), what
``status --entry``, ``flush --entry`` and ``online``/``offline --entry`` name."""

from __future__ import annotations

from ..host import Host
from .base import CommandError
from .results import StatusRow
from .status import status_table

__all__ = ["entry_row", "flushed_transport", "targeted_transport"]


async def entry_row(daemon: Host, entry: str) -> StatusRow:
    """The status row ``entry`` names; ``unknown_entry`` when there is none."""
    rows = await status_table(daemon)
    for row in rows:
        if row.get("entry_id") == entry:
            return row
    known = ", ".join(str(r.get("entry_id")) for r in rows)
    raise CommandError("unknown_entry", f"no status row with entry id {entry!r} (known: {known})")


async def flushed_transport(daemon: Host, entry: str) -> str | None:
    """What ``flush --entry`` flushes: every transport (the spooler's row) or one (a transport's)."""
    row = await entry_row(daemon, entry)
    if row["resource_type"] == "spooler":
        return None
    if row["resource_type"] == "transport":
        return str(row["name"])
    raise CommandError("no_support", f"{entry} cannot be flushed: name the spooler or a transport")


async def targeted_transport(daemon: Host, transport: str | None, entry: str | None) -> str:
    """The transport a command names, by its name or its row's entry id (one of the two)."""
    if (transport is None) == (entry is None):
        raise CommandError("bad_args", "name the transport, or its status row with entry")
    if entry is None:
        assert transport is not None
        return transport
    row = await entry_row(daemon, entry)
    if row["resource_type"] != "transport":
        raise CommandError("no_support", f"{entry} is a {row['resource_type']}'s row, not a transport's")
    return str(row["name"])

"""The status rows of a tightly coupled store and its transport name each other (MAPI: the transport's
row carries PR_OWN_STORE_ENTRYID), read from a daemon built in process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spoolerd.control.status import status_table
from tests.conftest import FakeClock
from tests.engine.harness import spooler


async def test_a_coupled_store_row_names_its_transport_and_the_transport_its_store(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Seed 004 / MAPI-NOTES status table: a tightly coupled store's transport row has OWN_STORE_ENTRYID;
    here both rows carry the other's entry id, and an uncoupled transport names none."""
    stores = {"local": {"provider": "sqlite", "addresses": ["@localhost"], "coupled_transport": "remote"}}
    transports = {"loopback": {"provider": "loopback"}, "remote": {"provider": "test-scripted"}}
    async with spooler(tmp_path, clock, transports, stores=stores) as h:
        rows: dict[str, Any] = {r["entry_id"]: r for r in await status_table(h.daemon)}
    assert rows["store:local"]["coupled_transport"] == "transport:remote"
    assert rows["transport:remote"]["own_store"] == ["store:local"]
    assert rows["transport:loopback"]["own_store"] == []

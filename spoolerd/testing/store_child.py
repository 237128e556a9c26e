"""A separate process that opens a store through the registry (as spoolerd-sendmail would) and writes.

usage: python -m spoolerd.testing.store_child SPEC submit N [--pause]
       python -m spoolerd.testing.store_child SPEC submit-new N
       python -m spoolerd.testing.store_child SPEC purge TIME
  SPEC is JSON {"provider", "options", "location"}. For each of N messages: create in the Outbox, submit,
  then print the id and flush stdout, so the parent knows exactly which submits returned; ``submit-new``
  does both in one call (``submit_new``). ``purge``
  purges Sent Items of what was filed before TIME and prints how many it removed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from spoolerd.message import Draft, FolderRole, NewRecipient
from spoolerd.plugins import PluginRegistry
from spoolerd.store import StoreContext


async def main(spec: dict[str, object], command: str, count: float) -> None:
    registry = PluginRegistry()
    store = registry.open_store(
        str(spec["provider"]),
        dict(spec["options"]),  # type: ignore[call-overload]
        StoreContext("child", Path(str(spec["location"]))),
    )
    await store.start()
    try:
        if command == "purge":
            sent = await store.folder(FolderRole.SENT)
            print("ready", flush=True)
            print(await store.purge(sent.id, count), flush=True)
            return
        outbox = await store.folder(FolderRole.OUTBOX)
        print("ready", flush=True)
        for i in range(int(count)):
            content = f"Subject: child {i}\r\n\r\n".encode() + bytes(range(256)) * 4
            draft = Draft(content, [NewRecipient(f"r{i}@example.org")])
            if command == "submit-new":
                mid = await store.submit_new(outbox.id, draft)
            else:
                mid = await store.create_message(outbox.id, draft)
                await store.submit(mid)
            print(mid, flush=True)
    finally:
        await store.stop()


if __name__ == "__main__":
    spec_arg, command, count_arg = sys.argv[1:4]
    if command not in ("submit", "submit-new", "purge"):
        sys.exit(f"unknown command {command!r}")
    asyncio.run(main(json.loads(spec_arg), command, float(count_arg)))

"""A spooler built from a config dict, with an injectable clock, for engine tests."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import Message as EmailMessage
from pathlib import Path
from typing import Any

import anyio

from spoolerd.config import parse_config
from spoolerd.daemon import Daemon, build, running
from spoolerd.events import QueueChanged
from spoolerd.message import Draft, FolderRole, Message, NewRecipient
from spoolerd.plugins import PluginRegistry
from spoolerd.store import MessageStore
from tests.conftest import FakeClock

CONTENT = b"From: me@localhost\r\nTo: someone\r\nSubject: test\r\n\r\nhello\r\n"


class Harness:
    def __init__(self, daemon: Daemon, clock: FakeClock) -> None:
        self.daemon = daemon
        self.clock = clock
        self.spooler = daemon.spooler

    @property
    def store(self) -> MessageStore:
        return self.daemon.stores[self.daemon.default_store]

    def transport(self, name: str) -> Any:
        return next(t for t in self.daemon.transports if t.name == name)

    async def submit(
        self,
        *to: str | tuple[str, str],
        content: bytes = CONTENT,
        store: str | None = None,
        sentmail: bool = True,
        **draft: Any,
    ) -> str:
        target = self.daemon.stores[store or self.daemon.default_store]
        outbox = await target.folder(FolderRole.OUTBOX)
        sent = await target.folder(FolderRole.SENT)
        draft.setdefault("sender", "me@localhost")
        mid = await target.create_message(
            outbox.id,
            Draft(
                content, [_recipient(a) for a in to], sentmail_folder=sent.id if sentmail else None, **draft
            ),
        )
        await target.submit(mid, preprocess=True)
        return mid

    async def finished(self, mid: str, store: str | None = None) -> None:
        """Wait (on store events, 10 s at most) until ``mid`` has left the queue."""
        target = self.daemon.stores[store or self.daemon.default_store]
        async with target.subscribe() as events:
            with anyio.fail_after(10):
                while mid in {e.id async for e in target.outgoing_queue()}:
                    event = await events.receive()
                    while not (isinstance(event, QueueChanged) and event.message_id == mid):
                        event = await events.receive()

    async def message(self, mid: str, store: str | None = None) -> Message:
        target = self.daemon.stores[store or self.daemon.default_store]
        return await target.open(mid)

    async def folder(self, role: FolderRole, store: str | None = None) -> list[Message]:
        target = self.daemon.stores[store or self.daemon.default_store]
        folder = await target.folder(role)
        return [await target.open(s.id) for s in await target.list_messages(folder.id)]


def _recipient(to: str | tuple[str, str]) -> NewRecipient:
    """An address, or (address, address type) for a non-SMTP one."""
    return NewRecipient(to) if isinstance(to, str) else NewRecipient(to[0], address_type=to[1])


def parse(content: bytes) -> EmailMessage:
    return email.message_from_bytes(content, policy=email.policy.compat32)


@asynccontextmanager
async def spooler(
    tmp_path: Path,
    clock: FakeClock,
    transports: dict[str, dict[str, Any]] | None = None,
    **sections: Any,
) -> AsyncIterator[Harness]:
    data: dict[str, Any] = {
        "spooler": {"state_dir": str(tmp_path), "reporting_mta": "spool.test", **sections.pop("spooler", {})},
        "stores": sections.pop("stores", {"local": {"provider": "sqlite", "addresses": ["@localhost"]}}),
        "transports": transports if transports is not None else {"loopback": {"provider": "loopback"}},
        **sections,
    }
    daemon = build(parse_config(data), PluginRegistry(), clock=clock)
    async with running(daemon):
        yield Harness(daemon, clock)


async def outlive_the_lease(clock: FakeClock, lease: float, steps: int = 2) -> None:
    """Let store time pass beyond ``lease`` in steps shorter than it, each followed by a real pause
    long enough for one renewal (every lease/3): renewing keeps the lock, not renewing loses it."""
    for _ in range(steps):
        clock.advance(lease * 0.6)
        await anyio.sleep(lease * 0.5)  # a renewal period passes: the window is the point, not a state

"""The webhooks of a running daemon: one sender per webhook and queuing store, woken by the delivery
stages through ``WebhookEvents``, and a status row per webhook (what ``spoolerctl status`` and the
metrics show)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import structlog

from ..errors import ConfigError
from ..events import QueueChanged, StoreEvent
from ..outbox import EventOutbox, missing_outbox
from ..resource_state import entry_id
from ..store import Clock, MessageStore
from .events import WebhookEvents
from .sender import WebhookSender
from .settings import WebhookSection

__all__ = ["Webhooks", "webhook_problems"]

log = structlog.get_logger("spoolerd.webhooks")


def webhook_problems(sections: Mapping[str, WebhookSection], stores: Mapping[str, MessageStore]) -> list[str]:
    """What keeps ``[webhooks]`` from working: a secret that cannot be read, a store with no outbox."""
    if not sections:
        return []
    problems = missing_outbox(dict(stores))
    for name, section in sections.items():
        try:
            section.secret()
        except ConfigError as exc:
            problems.extend(f"webhooks.{name}.{p}" for p in exc.problems)
    return problems


def _written_elsewhere(event: StoreEvent) -> bool:
    """A commit of another process (a delivery worker's finish, a delay warning it filed), which may
    have written events: the stores announce those as ``external``, or as a ``finish`` of no message
    in particular (PostgreSQL's notice of other daemons' finishes); this process's own finishes name
    their message, and wake the senders through ``WebhookEvents`` when they wrote events."""
    if not isinstance(event, QueueChanged):
        return False
    return event.reason == "external" or (event.reason == "finish" and event.message_id is None)


class Webhooks:
    """Built once the config checked out (``webhook_problems`` found nothing).

    With ``others_write`` (the daemon of delivery workers, ``[spooler] workers``), the workers write
    events too but send none: the senders here also wake when another process commits in their store,
    and send what it wrote. Several daemons need no such thing: each one's sender sends what its own
    daemon wrote, or leaves it to the one holding the webhook's outbox, which sends it next."""

    def __init__(
        self,
        sections: Mapping[str, WebhookSection],
        stores: Mapping[str, MessageStore],
        *,
        owner: str,
        clock: Clock,
        others_write: bool = False,
    ) -> None:
        self.sections = dict(sections)
        self.others_write = others_write
        self._stores = dict(stores)
        self.events = WebhookEvents({name: s.events for name, s in sections.items()})
        self.events.on_written.append(self.wake)
        self.senders = [
            WebhookSender(name, section, section.secret(), store_name, store, owner=owner, clock=clock)
            for name, section in sections.items()
            for store_name, store in stores.items()
            if store.can_queue and isinstance(store, EventOutbox)
        ]

    def wake(self, store: str) -> None:
        for sender in self.senders:
            if sender.store_name == store:
                sender.wake()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            for sender in self.senders:
                await tg.start(sender.run)
            if self.others_write:
                for name in {sender.store_name for sender in self.senders}:
                    tg.start_soon(self._follow, name)
            log.info("webhooks sending", webhooks=sorted(self.sections), senders=len(self.senders))
            task_status.started()

    async def _follow(self, store: str) -> None:
        async with self._stores[store].subscribe(accept=_written_elsewhere) as changes:
            async for _ in changes:
                self.wake(store)

    def rows(self) -> list[dict[str, Any]]:
        """A status row per webhook, its stores' senders added up."""
        rows = []
        for name, section in self.sections.items():
            senders = [s for s in self.senders if s.name == name]
            failing = [s.state for s in senders if s.state.failing_since is not None]
            errors = [s.state.last_error for s in senders if s.state.last_error]
            rows.append(
                {
                    "entry_id": entry_id("webhook", name),
                    "resource_type": "webhook",
                    "name": name,
                    "provider": section.url,
                    "status": ["failure"] if failing else ["available"],
                    "methods": [],
                    "counters": {
                        "sent": sum(s.state.sent for s in senders),
                        "failed": sum(s.state.failed for s in senders),
                        "dropped": sum(s.state.dropped for s in senders),
                        "backlog": sum(s.state.backlog for s in senders),
                    },
                    "last_error": errors[-1] if errors else None,
                    "since": min((f.failing_since for f in failing if f.failing_since), default=None),
                }
            )
        return rows

"""Downloading (the inbound half of the spooler): one loop per downloading transport, filing what it
hands over into the store it names, acknowledged remotely only after the local commit.

``receive()`` runs for the transport's life; when it returns, the transport has nothing more to
download and its loop ends. A failure is logged and the loop starts again after a wait that grows while
passes keep failing (``DOWNLOAD_RETRY``) and starts over once one files mail. At shutdown, and when a
reload removes or replaces a transport, its loop is cancelled first.

A downloading transport without a ``flush`` of its own is flushed through the spooler (seed 000, the
second procedure: FlushQueues with the transport as target): ``download_now`` lets a pass under way end,
then runs one that starts now (a failed pass's wait is cut short); ``received`` counts what each
transport handed over. Such a transport's ``receive()`` hands over what is waiting and returns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Protocol

import anyio
import structlog
from anyio.abc import TaskGroup

from .abilities import Downloading
from .envelope import header_sender, header_subject, one_line
from .errors import StoreError, TransportError
from .message import InboundMessage
from .resource_state import ResourceState, StatusChanges
from .retry import Backoff, Schedule
from .store import MessageStore

__all__ = ["DOWNLOAD_RETRY", "Downloads"]

log = structlog.get_logger("spoolerd.spooler")

DOWNLOAD_RETRY = Schedule(1.0, 300.0)  # between failed download passes; starts over once one files mail


class ReceivedCount(Protocol):
    received: int  # messages filed so far (the spooler's counters)


@dataclass(slots=True)
class _Loop:
    """One transport's download loop: its passes so far, the end of the next, and a failure's wait."""

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    passes: int = 0  # passes over (returned or failed)
    failed: bool = False  # the last pass failed (the loop waits, then tries again)
    over: anyio.Event = field(default_factory=anyio.Event)  # set when a pass ends, or the loop
    wake: anyio.Event = field(default_factory=anyio.Event)  # set: a failed pass's wait is cut short

    def pass_over(self) -> None:
        self.passes += 1
        self.over.set()
        self.over = anyio.Event()

    async def next_pass(self) -> None:
        """Return once the pass under way (or, while waiting after a failure, the next one) is over."""
        target = self.passes + 1
        self.wake.set()
        while self.passes < target and not self.scope.cancel_called:
            await self.over.wait()


class Downloads:
    def __init__(
        self,
        stores: Mapping[str, MessageStore],
        counters: ReceivedCount,
        changes: StatusChanges | None = None,
        rows: Callable[[str], ResourceState | None] = lambda name: None,
    ) -> None:
        self.stores = stores
        self.counters = counters
        self.received: Counter[str] = Counter()  # messages filed, by transport
        self.changes = changes  # a transport's status row: failing while its downloads fail, active
        self.rows = rows  # while it files one; by transport name
        self.stopping = False
        self._loops: dict[str, _Loop] = {}

    def start(self, tg: TaskGroup, name: str, transport: Downloading) -> None:
        """Run ``transport``'s download loop in ``tg``."""
        self._loops[name] = _Loop()  # at once, so a stop right after finds it
        tg.start_soon(self._receive, name, transport)

    def stop(self, name: str) -> None:
        loop = self._loops.pop(name, None)
        if loop is not None:
            loop.scope.cancel()
            loop.over.set()

    def stop_all(self) -> None:
        self.stopping = True
        for loop in self._loops.values():
            loop.scope.cancel()
            loop.over.set()

    async def download_now(self, tg: TaskGroup, name: str, transport: Downloading) -> None:
        """FlushQueues(DOWNLOAD) through the spooler for a transport without ``flush``: return once a pass
        that starts now is over (``received[name]`` counts what it filed). Raises ``TransportError``
        when that pass failed."""
        loop = self._loops.get(name)
        if loop is not None and not loop.failed:
            await loop.next_pass()  # under way: what is waiting may have come after it began
        loop = self._loops.get(name)
        if loop is None and not self.stopping:
            self.start(tg, name, transport)
            loop = self._loops[name]
        if loop is not None:
            await loop.next_pass()
            if loop.failed:
                raise TransportError(f"download by {name} failed (see the log); it is tried again")

    async def _receive(self, name: str, transport: Downloading) -> None:
        backoff = Backoff(DOWNLOAD_RETRY)
        loop = self._loops.setdefault(name, _Loop())
        with loop.scope:
            while not self.stopping:
                received = self.counters.received
                loop.failed = False
                try:
                    await self._receive_once(name, transport)
                except Exception as exc:
                    if self.counters.received > received:
                        backoff.reset()
                    wait = backoff.failed()
                    log.exception("download failed; retrying", transport=name, retry_in=wait)
                    self._downloading(name, f"download failed: {type(exc).__name__}: {exc}")
                    loop.failed, loop.wake = True, anyio.Event()
                    loop.pass_over()
                    with anyio.move_on_after(wait):  # a timer between failed downloads, not a poll
                        await loop.wake.wait()  # or a flush
                else:
                    log.info("download loop ended: nothing more to download", transport=name)
                    self._downloading(name)
                    break
        if self._loops.get(name) is loop:
            del self._loops[name]
        loop.pass_over()  # its last: a flush waiting on it is answered

    async def _receive_once(self, name: str, transport: Downloading) -> None:
        async for inbound in transport.receive():
            store = self.stores.get(inbound.store)
            if store is None:
                log.error("transport delivered to an unknown store", transport=name, store=inbound.store)
                continue
            row = self.rows(name)
            with self._filing(row):
                try:
                    await store.deliver(_summarised(inbound.message), state=inbound.state)
                except StoreError:
                    # not acknowledged, so the transport keeps the message and offers it again later
                    log.exception("could not file a downloaded message", transport=name, store=inbound.store)
                    continue
                self.counters.received += 1
                self.received[name] += 1
                await inbound.acknowledge()
            self._downloading(name)  # it downloads again

    def _downloading(self, name: str, failure: str | None = None) -> None:
        """The transport's row failing for ``failure``, or (None) no longer for its downloads."""
        row = self.rows(name)
        if self.changes is None or row is None:
            return
        if failure is None:
            self.changes.recover(row, "download")
        else:
            self.changes.fail(row, "download", failure)

    def _filing(self, row: ResourceState | None) -> AbstractContextManager[None]:
        """The transport's row active while a downloaded message is filed."""
        if self.changes is None or row is None:
            return nullcontext()
        return self.changes.working([row])


def _summarised(message: InboundMessage) -> InboundMessage:
    """Fill in the sender and subject of the contents table from the header, when the transport did not."""
    if message.sender and message.subject:
        return message
    sender = message.sender or header_sender(message.content)
    subject = message.subject or header_subject(message.content)
    return replace(message, sender=one_line(sender), subject=one_line(subject)[:255])

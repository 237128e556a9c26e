"""One webhook's sender for one store: the events of its outbox, in the order they were written, POSTed
one at a time and deleted once the endpoint answered 2xx (at least once; in order per message, since a
message's events are written in order and none is passed over).

It sleeps until the delivery stages wake it (events committed in its store) or a retry is due; never
polls. An endpoint that fails (no answer in ``timeout``, a non-2xx) is retried on the project's one
schedule (``retry.Schedule``: ``retry_initial`` doubling up to ``retry_maximum``), and while it waits
the sender gives its lease up (another daemon may send) and still trims the backlog at each wake-up:
delivery never waits for it, and at most ``max_backlog`` events wait, the oldest dropped first.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import structlog

from ..errors import StoreError, WebhookError
from ..outbox import EventOutbox, OutboxClaim, PendingEvent
from ..retry import Backoff, Schedule
from ..store import Clock
from .events import signed_headers
from .http import HttpPoster
from .settings import WebhookSection

__all__ = ["SenderState", "WebhookSender"]

log = structlog.get_logger("spoolerd.webhooks")

BATCH = 100  # events read per claim
ACK_EVERY = 32  # events sent between two deletes of what was sent


@dataclass(slots=True)
class SenderState:
    """What status and the metrics show of one sender."""

    sent: int = 0
    failed: int = 0  # POSTs that did not get a 2xx
    dropped: int = 0  # events dropped over max_backlog
    backlog: int = 0  # events waiting, as of the last read
    last_error: str | None = None
    failing_since: float | None = None  # the first failure since the last success


class WebhookSender:
    def __init__(
        self,
        name: str,
        section: WebhookSection,
        secret: bytes,
        store_name: str,
        store: EventOutbox,
        *,
        owner: str,
        clock: Clock = time.time,
    ) -> None:
        self.name = name
        self.section = section
        self.store_name = store_name
        self.store = store
        self.owner = owner
        self.clock = clock
        self._secret = secret
        self.poster = HttpPoster(section.url, section.timeout)
        self.backoff = Backoff(Schedule(section.retry_initial, section.retry_maximum))
        self.lease = max(60.0, 3 * section.timeout)  # renewed after each event sent
        self.state = SenderState()
        self._wake = anyio.Event()

    def wake(self) -> None:
        """Events were committed in the store."""
        self._wake.set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                try:
                    await self._round()
                except Exception:  # a bug here must not stop the daemon: the events wait in the store
                    log.exception("webhook sender failed", webhook=self.name, store=self.store_name)
                    await self._pause(self.backoff.failed())
        finally:
            with anyio.CancelScope(shield=True):
                await self.poster.close()
                await self._release()

    async def _round(self) -> None:
        self._wake = anyio.Event()  # before the read: what is written after it wakes the next wait
        try:
            claim = await self.store.outbox_claim(
                self.name, owner=self.owner, lease=self.lease, limit=BATCH, keep=self.section.max_backlog
            )
        except StoreError as exc:
            log.warning("webhook outbox unreadable", webhook=self.name, store=self.store_name, error=str(exc))
            await self._pause(self.backoff.failed())
            return
        self._counted(claim)
        if claim.events:
            if await self._send(claim.events):
                return
            await self._release()  # waiting: another daemon may try meanwhile
            await self._pause(self.backoff.failed())
        elif claim.held_until is not None:  # another daemon sends: take over if its lease runs out
            await self._pause(claim.held_until - self.clock())
        else:
            await self._wake.wait()

    async def _send(self, events: Sequence[PendingEvent]) -> bool:
        """POST each event in order until one fails; True when all went. What was taken is deleted every
        ``ACK_EVERY`` events (the lease renewed with it) and at the end: a crash resends at most that many."""
        taken: list[int] = []
        renewed = anyio.current_time()
        try:
            for event in events:
                headers = signed_headers(self._secret, event.payload, self.clock())
                try:
                    status = await self.poster.post(event.payload, headers)
                except WebhookError as exc:
                    self._failed(str(exc))
                    return False
                if not 200 <= status < 300:
                    self._failed(f"{self.section.url} answered {status}")
                    return False
                taken.append(event.seq)
                self._succeeded()
                if len(taken) >= ACK_EVERY or anyio.current_time() - renewed > self.lease / 3:
                    acked, taken = taken, []
                    if not await self._ack(acked):
                        return False
                    renewed = anyio.current_time()
        finally:
            with anyio.CancelScope(shield=True):
                ok = await self._ack(taken)
        return ok

    async def _ack(self, seqs: list[int]) -> bool:
        if not seqs:
            return True
        try:
            await self.store.outbox_ack(self.name, seqs, owner=self.owner, lease=self.lease)
        except StoreError as exc:  # sent, not forgotten: they go again (at least once)
            self._failed(f"store: {exc}")
            return False
        self.state.sent += len(seqs)
        self.state.backlog = max(0, self.state.backlog - len(seqs))
        log.debug("webhook events sent", webhook=self.name, store=self.store_name, events=len(seqs))
        return True

    def _failed(self, error: str) -> None:
        self.state.failed += 1
        self.state.last_error = error
        if self.state.failing_since is None:
            self.state.failing_since = self.clock()
            log.warning("webhook failing", webhook=self.name, store=self.store_name, error=error)

    def _succeeded(self) -> None:
        self.backoff.reset()
        if self.state.failing_since is not None:
            log.info("webhook answering again", webhook=self.name, store=self.store_name)
            self.state.failing_since = None

    def _counted(self, claim: OutboxClaim) -> None:
        self.state.backlog = claim.backlog
        if claim.dropped:
            self.state.dropped += claim.dropped
            log.warning(
                "webhook backlog over max_backlog: oldest events dropped",
                webhook=self.name,
                store=self.store_name,
                dropped=claim.dropped,
                max_backlog=self.section.max_backlog,
            )

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``; a wake-up meanwhile only trims the backlog (the bound holds while waiting)."""
        deadline = anyio.current_time() + max(0.0, seconds)
        while True:
            with anyio.move_on_after(deadline - anyio.current_time()):
                await self._wake.wait()
            if anyio.current_time() >= deadline:
                return
            self._wake = anyio.Event()
            try:
                claim = await self.store.outbox_claim(
                    self.name, owner=self.owner, lease=self.lease, limit=0, keep=self.section.max_backlog
                )
            except StoreError:
                continue  # said when the wait is over and the read fails again
            self._counted(claim)

    async def _release(self) -> None:
        with contextlib.suppress(StoreError):  # if it fails, the lease runs out by itself
            await self.store.outbox_release(self.name, self.owner)

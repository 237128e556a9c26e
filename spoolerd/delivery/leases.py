"""Leases of the messages in flight: a lock is a lease, renewed while its attempt runs.

Every third of the lease, every lease in flight is renewed together (one group commit for a store),
each bounded by that third so one slow store cannot hold up the rest. While none is held the renewer
sleeps until one is: an idle daemon adds no renewal timers. A lease found lost (taken over after it
expired, or the message left the queue) cancels its attempt rather than race the new holder.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import structlog

from ..errors import LockLost, NotFound, NotInQueue
from ..store import MessageStore

__all__ = ["Leases"]

log = structlog.get_logger("spoolerd.delivery")


@dataclass(frozen=True, slots=True)
class _Lease:
    store: MessageStore
    message_id: str
    owner: str
    scope: anyio.CancelScope  # cancelled if the lease is lost


class Leases:
    """The leases held by the attempts in flight, and their renewer (``renew``, run by the spooler)."""

    def __init__(self, lease: float) -> None:
        self._lease = lease
        self._held: dict[int, _Lease] = {}
        self._changed = anyio.Event()
        self._rearm = anyio.Event()
        self._reloaded = False  # the lease changed: renew now (else a re-arm only means none is held)
        self.renewal_timers = 0  # renewals on the lease timer: an idle daemon must not add to them

    @property
    def lease(self) -> float:
        return self._lease

    @lease.setter
    def lease(self, lease: float) -> None:
        """A reload: the renewer re-arms at once, so a shorter lease is renewed in time."""
        self._lease = lease
        self._reloaded = True
        self._rearm.set()

    def held(self, store: MessageStore, message_id: str) -> bool:
        """Whether an attempt in flight holds the message's lease now."""
        return any(x.store is store and x.message_id == message_id for x in self._held.values())

    @asynccontextmanager
    async def leased(self, store: MessageStore, message_id: str, owner: str) -> AsyncIterator[None]:
        """Keep the lease renewed while the body runs; if it is lost, cancel the body."""
        with anyio.CancelScope() as scope:
            lease = _Lease(store, message_id, owner, scope)
            self._held[id(lease)] = lease
            self._changed.set()
            try:
                yield
            finally:
                del self._held[id(lease)]
                if not self._held:
                    self._rearm.set()  # the renewer goes back to sleep now, not at its next timer

    async def renew(self) -> None:
        """Every third of the lease, renew every lease in flight, together; while none is held, sleep
        until one is. It never raises: a failed renewal is tried again next time."""
        while True:
            self._rearm = anyio.Event()  # armed before the check: a lease ending after it sets this one
            if not self._held:
                self._changed = anyio.Event()
                await self._changed.wait()
                continue  # the lease that woke us may be over already: look again before a timer
            with anyio.move_on_after(self._lease / 3) as timer:
                await self._rearm.wait()  # a reload: renew now, then at the new pace; or none is held
            self.renewal_timers += timer.cancelled_caught
            if not (timer.cancelled_caught or self._reloaded):
                continue  # the last lease ended: any held now is newer than a third of a lease
            self._reloaded = False
            held = list(self._held.values())
            if held:
                async with anyio.create_task_group() as tg:
                    for lease in held:
                        tg.start_soon(self._renew, lease)

    async def _renew(self, lease: _Lease) -> None:
        where = {"store": lease.store.name, "message": lease.message_id}
        try:
            with anyio.fail_after(self._lease / 3):
                await lease.store.renew(lease.message_id, lease.owner, self._lease)
        except (LockLost, NotInQueue, NotFound):
            if id(lease) in self._held:  # not merely finished while the renewal was on its way
                log.warning("lease lost; abandoning the attempt", **where)
                lease.scope.cancel()
        except TimeoutError:
            log.warning("lease renewal timed out; trying again", **where)
        except Exception:  # a store plugin's surprise must not stop every other renewal
            log.exception("lease renewal failed; trying again", **where)

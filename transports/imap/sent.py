"""Sent copies as a debt kept in the store, so that no copy is lost to a crash.

When a message ends with recipients delivered by other transports, the spooler tells the transport
before it finishes the message (``owe``): the copy owed is committed in the message's store, in the
transport's own memory (``transport_state``)::

    sent/<message id, %-encoded>/<content digest>    the content to file, as it was sent

Then the message is finished, then the copy is filed and its debt forgotten (``pay``). A daemon killed
anywhere in between finds the debt at its next start and pays it then. Filing checks first whether an
earlier attempt already put the copy there (its answer lost to the crash), so paying twice files once.
A server that cannot be reached keeps the debt, tried again after a backoff; a copy the server refuses
for good is dropped with a log line, as a sent copy is never a reason to hold anything else up.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import quote

import structlog

from spoolerd.errors import StoreError
from spoolerd.message import Message, StateChange
from spoolerd.retry import Backoff, Schedule
from spoolerd.store import MessageStore
from spoolerd.transport import Outcome, OutcomeKind

__all__ = ["SentCopies"]

log = structlog.get_logger("spoolerd.transports.imap")

PREFIX = "sent/"


class SentCopies:
    """The debts of one transport (``name``) in every store, and the loop that pays them."""

    def __init__(
        self,
        name: str,
        stores: Mapping[str, MessageStore],
        default_store: str,
        file: Callable[[bytes], Awaitable[Outcome]],
        retry: Schedule,
    ) -> None:
        self.name = name
        self.stores = stores
        self.default_store = default_store
        self._file = file  # checks for an earlier copy, then APPENDs
        self._retry = retry
        self._lock = asyncio.Lock()  # one payer at a time: two would both find the copy missing
        self._owing = asyncio.Event()  # set when a payment failed and the loop should try again
        self._failing = False  # the last payment could not be made: ``run`` is backing off
        self.filed = 0
        self.owed = 0  # debts left after the last payment

    @staticmethod
    def key(message: Message) -> str:
        """Message ids are a store's own: two stores may both have a message 7, so the content's digest
        is part of the key."""
        digest = hashlib.sha256(message.content).hexdigest()[:16]
        return f"{PREFIX}{quote(message.id, safe='')}/{digest}"

    async def owe(self, store: MessageStore, message: Message) -> None:
        """Commit the debt in ``store``, before the message is finished there."""
        await store.set_transport_state(StateChange(self.name, {self.key(message): message.content}))

    async def file_now(self, message: Message) -> None:
        """Pay this message's copy (recorded in the default store first if the spooler did not say it
        was owed: a core without ``owe_sent``, or a copy offered again). While the server is failing,
        the debt is left to ``run``'s backoff rather than tried by every message that finishes."""
        key = self.key(message)
        holder = await self._holder(key)
        if holder is None:
            name = self.default_store
            if name not in self.stores:
                return
            holder = (name, self.stores[name])
            await self.owe(holder[1], message)
        if self._failing:
            self.owed += 1
            return
        async with self._lock:
            paid = await self._pay_one(*holder, key, message.content)
        if not paid:
            self._failing = True
            self.owed += 1
            self._owing.set()

    async def _holder(self, key: str) -> tuple[str, MessageStore] | None:
        for name, store in self.stores.items():
            if key in await store.transport_state(self.name, key):
                return name, store
        return None

    async def pay(self) -> bool:
        """File every copy owed in every store, in order; False at the first that cannot be filed now
        (the server is down: try again later)."""
        async with self._lock:
            debts = [
                (name, store, key, content)
                for name, store in self.stores.items()
                for key, content in (await store.transport_state(self.name, PREFIX)).items()
            ]
            self.owed = len(debts)
            for name, store, key, content in debts:
                if not await self._pay_one(name, store, key, content):
                    self._failing = True
                    return False
                self.owed -= 1
            self._failing = False
            return True

    async def _pay_one(self, store_name: str, store: MessageStore, key: str, content: bytes) -> bool:
        outcome = await self._file(content)
        where = {"transport": self.name, "store": store_name, "copy": key.removeprefix(PREFIX)}
        if outcome.kind is OutcomeKind.DEFERRED:
            log.warning("sent copy owed", **where, error=outcome.diagnostic)
            return False
        if outcome.kind is OutcomeKind.FAILED:
            log.warning("no sent copy", **where, error=outcome.diagnostic)
        else:
            self.filed += 1
            log.info("sent copy filed", **where, result=outcome.diagnostic)
        await store.set_transport_state(StateChange(self.name, {key: None}))
        return True

    async def run(self) -> None:
        """Pay what an earlier life of the daemon left owed, then whatever a failed payment leaves,
        after a backoff doubling from ``reconnect_initial`` to ``reconnect_max``."""
        backoff = Backoff(self._retry)
        while True:
            try:
                paid = await self.pay()
            except StoreError as exc:  # e.g. a store not open yet, or its disk
                log.warning("sent copies owed unreadable", transport=self.name, error=str(exc))
                paid = False
            if paid:
                backoff.reset()
                self._owing.clear()
                await self._owing.wait()
                continue
            await asyncio.sleep(backoff.failed())

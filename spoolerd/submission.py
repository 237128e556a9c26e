"""Submitting a message on a client's behalf (IMessage::SubmitMessage as the daemon performs it).

A store with ``coupled_transport`` is the seed document's tightly coupled store: when the message needs
no preprocessing, the store hands the recipients its own transport serves to that transport inside the
submit, before the spooler ever sees them. All of them delivered: the message is finished at once (Sent
Items / delete) without the spooler. Otherwise what is left (other recipients, deferrals, failures that
need a report) is queued for the spooler, which wakes for it. With preprocessing needed, the whole
message goes to the spooler, which preprocesses first (MAPI's NEEDS_PREPROCESSING path).

The message is queued already locked (``submit(lock=...)``), so the spooler cannot race the handover.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import anyio
import structlog

from .errors import NotFound
from .message import RecipientState, RecipientUpdate
from .routing import serves
from .spooler import Spooler
from .store import MessageStore
from .transport import OutcomeKind, Transport

__all__ = ["SubmitResult", "Submitter"]

log = structlog.get_logger("spoolerd.submission")


@dataclass(frozen=True, slots=True)
class SubmitResult:
    queued: bool  # left for the spooler (False: finished inside submit by the coupled transport)
    handled: int = 0  # recipients the coupled transport took


class Submitter:
    def __init__(
        self,
        stores: Mapping[str, MessageStore],
        coupled: Mapping[str, Transport],
        *,
        preprocess: bool,
        spooler: Spooler | None = None,
        lease: float = 300.0,
    ) -> None:
        self.stores = stores
        self.coupled = coupled
        self.preprocess = preprocess  # any preprocessor or distribution list is configured
        self.spooler = spooler
        self.lease = lease

    async def submit(self, store_name: str, message_id: str) -> SubmitResult:
        store = self.stores.get(store_name)
        if store is None:
            raise NotFound(f"no store named {store_name!r}")
        transport = self.coupled.get(store_name)
        if transport is None or self.preprocess:
            await store.submit(message_id, preprocess=self.preprocess)
            return SubmitResult(queued=True)
        owner = f"coupled:{store_name}:{secrets.token_hex(4)}"
        await store.submit(message_id, lock=(owner, self.lease))
        try:
            return await self._hand_over(store, transport, message_id, owner)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await store.unlock(message_id, owner)
            if self.spooler is not None:
                self.spooler.wake()
            raise

    async def _hand_over(
        self, store: MessageStore, transport: Transport, message_id: str, owner: str
    ) -> SubmitResult:
        message = await store.lock(message_id, owner, self.lease)  # our own lock: a fresh snapshot
        mine = [
            r
            for r in message.recipients
            if not r.state.final and serves(transport.address_types, r.address_type)
        ]
        updates = []
        if mine:
            try:
                outcomes = await transport.send(message, mine)
            except Exception:
                log.exception(
                    "coupled transport failed; the spooler takes the message", transport=transport.name
                )
                outcomes = []
            for rcpt, outcome in zip(mine, outcomes, strict=False):
                if outcome.kind is OutcomeKind.DELIVERED:
                    updates.append(
                        RecipientUpdate(rcpt.index, RecipientState.DELIVERED, transport.name, outcome.code,
                                        outcome.status, outcome.diagnostic)
                    )  # fmt: skip
        if updates:
            await store.record_outcomes(message_id, owner, updates)
        delivered = {u.index for u in updates}
        if all(r.state is RecipientState.DELIVERED or r.index in delivered for r in message.recipients):
            await store.finish(message_id, owner)
            return SubmitResult(queued=False, handled=len(updates))
        await store.unlock(message_id, owner)
        if self.spooler is not None:
            self.spooler.wake()
        return SubmitResult(queued=True, handled=len(updates))

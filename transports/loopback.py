"""The loopback transport (entry point ``loopback``): delivers to the local stores that own an address.

Each store may own addresses (``addresses`` in its ``[stores.NAME]`` section): a full address
(``alice@example.org``) or a whole domain (``@example.org``). A recipient owned by a store gets one copy
filed into that store's receive folder; anything else is NOT_ME, so the next transport may take it.
Several recipients in one store get one copy between them, as a mailbox would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from spoolerd.errors import StoreError
from spoolerd.message import InboundMessage, Message, Recipient
from spoolerd.transport import Outcome, TransportContext

__all__ = ["LoopbackSettings", "LoopbackTransport"]


class LoopbackSettings(BaseModel):
    """``[transports.NAME]`` keys of a transport with ``provider = "loopback"`` (none yet)."""

    model_config = ConfigDict(extra="forbid")


class LoopbackTransport:
    Settings: ClassVar[type[BaseModel]] = LoopbackSettings

    def __init__(self, settings: LoopbackSettings, context: TransportContext) -> None:
        self.name = context.name
        self.address_types: frozenset[str] | None = frozenset({"SMTP"})
        self._stores = context.stores
        self._exact: dict[str, str] = {}
        self._domains: dict[str, str] = {}
        for store, addresses in context.store_addresses.items():
            for address in addresses:
                local, _, domain = address.rpartition("@")
                if local:
                    self._exact.setdefault(address.casefold(), store)
                else:
                    self._domains.setdefault(domain.casefold(), store)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def owner(self, address: str) -> str | None:
        """The store that owns ``address``, if any."""
        store = self._exact.get(address.casefold())
        if store is None:
            store = self._domains.get(address.rpartition("@")[2].casefold())
        return store

    def destination(self, recipient: Recipient) -> str:
        return f"store:{self.owner(recipient.address) or '-'}"

    async def send(self, message: Message, recipients: Sequence[Recipient]) -> list[Outcome]:
        outcomes: list[Outcome] = [Outcome.not_me()] * len(recipients)
        by_store: dict[str, list[int]] = {}
        for i, rcpt in enumerate(recipients):
            store = self.owner(rcpt.address)
            if store is not None and store in self._stores:
                by_store.setdefault(store, []).append(i)
        for store, positions in by_store.items():
            try:
                delivery = await self._stores[store].deliver(
                    InboundMessage(
                        message.content,
                        message_class=message.message_class if message.message_class != "IPM" else "",
                        sender=message.sender,
                        subject=message.subject,
                    )
                )
            except StoreError as exc:
                outcome = Outcome.deferred(f"store {store} could not take the message: {exc}", status="4.2.0")
            else:
                outcome = Outcome.delivered(f"filed in store {store} as {delivery.message_id}")
            for i in positions:
                outcomes[i] = outcome
        return outcomes

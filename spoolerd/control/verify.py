"""``verify``: how each address would be completed, aliased and routed, delivering nothing (what
``sendmail -bv`` and ``spoolerctl verify`` show).

Routing is the spooler's: the transports whose address types serve the recipient, in configured order;
the first takes it unless it answers NOT_ME (the loopback transport does for addresses no store owns:
its destination then reads ``store:-``), and the next is tried. No transport left: an NDR. A transport
that ``[sender_routes]`` binds to some senders is shown only for the sender given (``--from``, sendmail's
``-f``, if the caller may choose its sender), else for the caller's own address.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypedDict

from ..addressing import Mailbox, complete, expand_aliases, parse_address, parse_address_list
from ..config import Config
from ..errors import BadAddress
from ..message import Recipient, RecipientKind, address_type_of
from ..routing import SenderRoutes, serves
from ..slot import TransportSlot
from ..submit_rules import address_policy, default_domain, local_sender, trusted

__all__ = ["Route", "Unverifiable", "Verified", "VerifiedRecipient", "verify_addresses", "verifying_sender"]


class Route(TypedDict):
    transport: str  # a transport that serves the address type, in routing order
    destination: str
    online: bool


class VerifiedRecipient(TypedDict):
    address: str
    routes: list[Route]


class Verified(TypedDict):
    input: str
    address: str  # completed with the default domain
    aliased: bool
    recipients: list[VerifiedRecipient]  # after aliases


class Unverifiable(TypedDict):
    input: str
    error: dict[str, str]  # code bad_address, message


def _routes(address: str, slots: Sequence[TransportSlot]) -> list[Route]:
    recipient = Recipient(0, address, "", address_type_of(address), RecipientKind.TO)
    return [
        Route(transport=slot.name, destination=slot.transport.destination(recipient), online=slot.online)
        for slot in slots
        if serves(slot.address_types, recipient.address_type)
    ]


def _verify(config: Config, slots: Sequence[TransportSlot], text: str) -> list[Verified]:
    """``slots``: the transports this sender may use."""
    policy, domain = address_policy(config), default_domain(config)
    mailboxes = parse_address_list(text)
    if not mailboxes:
        raise BadAddress(f"{text!r}: no address")
    out = []
    for mailbox in mailboxes:
        address = complete(mailbox.address, domain)
        expanded = [m.address for m, _kind in expand_aliases(policy, [(Mailbox(address), "to")])]
        recipients = [VerifiedRecipient(address=a, routes=_routes(a, slots)) for a in expanded]
        aliased = expanded != [address]
        out.append(Verified(input=text, address=address, aliased=aliased, recipients=recipients))
    return out


def verifying_sender(config: Config, uid: int, asked: str | None) -> str:
    """The envelope sender a submit by ``uid`` would get: ``asked`` if it may choose one, else its own."""
    if asked is None or not trusted(config, uid, os.getuid()):
        return local_sender(config, uid)
    return complete(parse_address(asked).address, default_domain(config)) if asked else ""  # "": null


def verify_addresses(
    config: Config, slots: Sequence[TransportSlot], texts: Sequence[str], sender: str | None = None
) -> list[Verified | Unverifiable]:
    """One entry per address given (an argument may hold a list: one per mailbox in it); an address
    that cannot be mail gets an ``error`` (code ``bad_address``) instead of recipients. ``sender``: the
    envelope sender whose ``[sender_routes]`` apply (None: a sender no rule names)."""
    named = [(slot.name, slot) for slot in slots]
    slots = [slot for _name, slot in SenderRoutes(config.sender_routes).eligible(sender or "", named)]
    out: list[Verified | Unverifiable] = []
    for text in texts:
        try:
            out += _verify(config, slots, text)
        except BadAddress as exc:
            out.append(Unverifiable(input=text, error={"code": exc.code, "message": str(exc)}))
    return out

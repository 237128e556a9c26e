"""Routing and recipient expansion, with no I/O.

Routing follows the MAPI spooler: a recipient goes to the first transport, in configured order, whose
address types include the recipient's type exactly (compared case-insensitively). ``None`` as a
transport's types means any type; an empty set means never (a preprocessor-only transport). A transport
that answered NOT_ME is skipped for that recipient; with no transport left, the recipient is unroutable.

Before that, the envelope sender picks among the transports named in ``[sender_routes]`` (Postfix's
sender_dependent_relayhost_maps): such a transport is used only for the senders whose rule names it, so
each sender's mail leaves through its own relay and account, while transports no rule names (loopback
for the local stores, say) serve every sender as before.

A tightly coupled store's transport (``coupled_transport``, seed 004) has the first chance at the
recipients it serves when the store submits (again, after preprocessing): ``first_chance`` puts it at
the head of the sender's eligible transports, and ``coupled_share`` is what it takes at submit. A
sender that ``[sender_routes]`` sends elsewhere is not taken by it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from .message import NewRecipient, Recipient

__all__ = [
    "Route",
    "SenderRoutes",
    "coupled_share",
    "expand_recipients",
    "first_chance",
    "route",
    "serves",
]

T = TypeVar("T")


def serves(address_types: frozenset[str] | None, address_type: str) -> bool:
    if address_types is None:
        return True
    wanted = address_type.casefold()
    return any(t.casefold() == wanted for t in address_types)


@dataclass(slots=True)
class Route:
    by_transport: dict[str, list[Recipient]] = field(default_factory=dict)
    unroutable: list[Recipient] = field(default_factory=list)


def route(
    recipients: Iterable[Recipient],
    transports: Sequence[tuple[str, frozenset[str] | None]],
    refused: Mapping[int, set[str]] | None = None,
) -> Route:
    """Assign each recipient to its first serving transport not in ``refused[recipient.index]``."""
    refused = refused or {}
    plan = Route()
    for rcpt in recipients:
        skip = refused.get(rcpt.index, set())
        for name, types in transports:
            if name not in skip and serves(types, rcpt.address_type):
                plan.by_transport.setdefault(name, []).append(rcpt)
                break
        else:
            plan.unroutable.append(rcpt)
    return plan


def expand_recipients(
    recipients: Sequence[Recipient | NewRecipient], lists: Mapping[str, Sequence[str]]
) -> list[NewRecipient]:
    """Expand distribution lists (recursively, each list once) and drop duplicates (ExpandRecips).

    A member keeps the kind (to/cc/bcc) and the DSN parameters of the list entry it came from; the
    first occurrence of an address wins, so an explicit To beats the same address reached through a
    Bcc list later.
    """
    table = {name.casefold(): members for name, members in lists.items()}
    out: list[NewRecipient] = []
    seen: set[tuple[str, str]] = set()

    def add(rcpt: NewRecipient, expanding: frozenset[str]) -> None:
        key = rcpt.address.casefold()
        members = table.get(key)
        if members is not None and key not in expanding:
            for member in members:
                member_rcpt = NewRecipient(member, kind=rcpt.kind, notify=rcpt.notify, orcpt=rcpt.orcpt)
                add(member_rcpt, expanding | {key})
            return
        identity = (rcpt.resolved_type.casefold(), key)
        if identity not in seen:
            seen.add(identity)
            out.append(rcpt)

    for r in recipients:
        new = (
            r
            if isinstance(r, NewRecipient)
            else NewRecipient(r.address, r.display_name, r.kind, r.address_type, r.notify, r.orcpt)
        )
        add(new, frozenset())
    return out


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


@dataclass(frozen=True, slots=True)
class SenderRoutes:
    """``[sender_routes]``: envelope sender pattern -> transport name. A pattern is an address (compared
    case-insensitively), ``@domain`` (every sender at that domain), or a wildcard (``*``, ``?``,
    ``[...]``, as in shell globs: ``*@*.example.org``; ``*`` alone is the default). The most specific
    wins: the address, then its ``@domain``, then the wildcards in the order they are written."""

    rules: Mapping[str, str] = field(default_factory=dict)

    @property
    def bound(self) -> frozenset[str]:
        """The transports some rule names: each is used only for the senders it is chosen for."""
        return frozenset(self.rules.values())

    def transport_for(self, sender: str) -> str | None:
        """The transport the rules choose for ``sender`` ("" is the null sender), or None."""
        table = {pattern.casefold(): name for pattern, name in self.rules.items()}
        address = sender.casefold()
        if address in table and not _is_glob(address):
            return table[address]
        _local, at, domain = address.rpartition("@")
        if at and f"@{domain}" in table:
            return table[f"@{domain}"]
        for pattern, name in table.items():
            if _is_glob(pattern) and fnmatch.fnmatchcase(address, pattern):
                return name
        return None

    def eligible(self, sender: str, transports: Sequence[tuple[str, T]]) -> list[tuple[str, T]]:
        """``transports`` (name, anything) in their order, without the bound ones this sender's rule
        does not choose."""
        if not self.rules:
            return list(transports)
        chosen = self.transport_for(sender)
        bound = self.bound
        return [t for t in transports if t[0] not in bound or t[0] == chosen]


def first_chance(transports: Sequence[tuple[str, T]], name: str | None) -> list[tuple[str, T]]:
    """``transports`` in their order, the one named ``name`` (a coupled store's transport) moved first;
    unchanged when it is not among them (a sender routed elsewhere, say)."""
    return sorted(transports, key=lambda t: t[0] != name) if name is not None else list(transports)


def coupled_share(
    sender: str,
    recipients: Iterable[Recipient],
    transport: tuple[str, frozenset[str] | None],
    routes: SenderRoutes,
) -> list[Recipient]:
    """The recipients without a final state that a coupled store's ``transport`` (name, address types)
    takes at submit (RESPONSIBILITY TRUE): those it serves, unless ``routes`` bind it to other senders;
    what ``route`` gives it when it has the ``first_chance``."""
    if not routes.eligible(sender, [transport]):
        return []
    return [r for r in recipients if not r.state.final and serves(transport[1], r.address_type)]

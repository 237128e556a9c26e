"""Which daemon holds what, on a store several daemons share: live leases counted by owner.

A lease carries its daemon's owner name (``spoolerd@HOST:STATE_DIR``, see ``daemon.lease_owner``); a
coupled hand-over's sub-owner (``OWNER#coupled:...``) counts as its daemon's. An expired lease is held by
nobody: any daemon may take the message.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..store import MessageStore, lease_daemon

__all__ = ["LeaseHolders", "lease_holders", "owned_by"]


@dataclass(frozen=True, slots=True)
class LeaseHolders:
    queued: int
    leases: dict[str, int]  # live leases by owner (a daemon's name; a coupled hand-over's counts as its)


async def lease_holders(store: MessageStore, now: float) -> LeaseHolders:
    queued, leases = 0, Counter[str]()
    async for entry in store.outgoing_queue():
        queued += 1
        if entry.lock_owner is not None and (entry.lock_expiry is None or entry.lock_expiry > now):
            leases[lease_daemon(entry.lock_owner)] += 1
    return LeaseHolders(queued, dict(leases))


def owned_by(lock_owner: str | None, owner: str) -> bool:
    return lock_owner is not None and lease_daemon(lock_owner) == owner

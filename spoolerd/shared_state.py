"""Shared state: an optional store ability, what several delivery processes need to keep one budget.

A rate budget (spoolerd/delivery/rates.py) read, changed and written back by two processes at once
loses one's change: each would think its send was the only one, and the destination would get twice
the rate. ``update_transport_state`` makes the read and the write one step: the store runs ``change``
on the key's value inside one write transaction, which no other writer of the store (in any process,
on any machine sharing it) can come between. The stores of this repository have it; a daemon with
delivery workers (``[spooler] workers``) and a ``rate`` refuses to start on a default store that has
not, and without it several daemons on one store each spend their own budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

__all__ = ["Change", "SharedState"]

T = TypeVar("T")

# the key's value (None: not set) -> what to write (None: leave it as it is) and what to answer
Change = Callable[[bytes | None], tuple[bytes | None, T]]


@runtime_checkable
class SharedState(Protocol):
    async def update_transport_state(self, transport: str, key: str, change: Change[T]) -> T:
        """In one write transaction: read ``key`` of ``transport``'s memory, run ``change`` on it and
        write what it gives back; return its answer once that is durable. ``change`` runs wherever the
        store runs its transactions (a thread of its own, say), once: it must only compute. What it
        raises undoes the transaction and reaches the caller as the store reports a failed write."""

"""Delivery attempts, in stages with one job each (the Dispatcher runs them in order):

- ``leases``: the lock of each message in flight is a lease, renewed while its attempt runs;
- ``limits``: per-destination concurrency, and the destinations known to be down;
- ``send``: route each recipient to a transport and send, under the limits and the send timeout;
- ``decide``: what an attempt comes to (updates, retry, reports), with no I/O;
- ``reports``: NDR, DR and delay warnings filed in the sender's store, once each;
- ``dispatcher``: one attempt, from the lock to the finish or the retry.
"""

from __future__ import annotations

from ..slot import TransportSlot
from .decide import AttemptResult, RecipientResult
from .dispatcher import Dispatcher
from .settings import DeliverySettings

__all__ = ["AttemptResult", "DeliverySettings", "Dispatcher", "RecipientResult", "TransportSlot"]

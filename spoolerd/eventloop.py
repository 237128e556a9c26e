"""The daemon's event loop: uvloop when it is installed (a dependency on Linux), which measured about
1.5x the spooler's throughput of asyncio's own loop here; ``SPOOLERD_EVENT_LOOP=asyncio`` opts out."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar, TypeVarTuple, Unpack

import anyio

__all__ = ["run", "uses_uvloop"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def uses_uvloop() -> bool:
    if os.environ.get("SPOOLERD_EVENT_LOOP", "").lower() == "asyncio":
        return False
    return importlib.util.find_spec("uvloop") is not None


def run(func: Callable[[Unpack[Ts]], Awaitable[T]], *args: *Ts) -> T:
    return anyio.run(func, *args, backend="asyncio", backend_options={"use_uvloop": uses_uvloop()})

"""Durability: a writer killed with SIGKILL at random points loses no submit it acknowledged."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess

import anyio
import pytest

from spoolerd.testing import StoreFactory

ROUNDS = 8


async def run_and_kill(factory: StoreFactory, delay: float, command: str = "submit") -> list[str]:
    """Start a submitting child (store_child.py's ``command``), SIGKILL it ``delay`` seconds after it is
    ready; return the ids it reported as submitted (each printed only after its submit returned)."""
    proc = await asyncio.create_subprocess_exec(
        *factory.child_command(command, "100000"), stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    with anyio.fail_after(30):
        assert (await proc.stdout.readline()).strip() == b"ready"
    await asyncio.sleep(delay)  # the kill point is the variable under test, not a wait for state
    proc.send_signal(signal.SIGKILL)
    rest = await proc.stdout.read()
    assert await proc.wait() == -signal.SIGKILL
    # the last line may be cut mid-write by the kill; only whole lines count as acknowledged
    lines = rest.decode().split("\n")
    return [line for line in lines[:-1] if line]


@pytest.mark.timeout(180)
async def test_sigkill_never_loses_an_acknowledged_submit(store_factory: StoreFactory) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    acknowledged: list[str] = []
    for _ in range(ROUNDS):
        acknowledged += await run_and_kill(store_factory, rng.uniform(0.0, 0.4))

    assert acknowledged, f"the child never got to submit anything (seed {seed})"
    assert await store_factory.integrity() == "ok"
    store = await store_factory.open()
    queued = {e.id async for e in store.outgoing_queue()}
    missing = [mid for mid in acknowledged if mid not in queued]
    assert missing == [], f"{len(missing)} acknowledged submits lost (seed {seed})"
    for mid in acknowledged[:: max(1, len(acknowledged) // 50)]:
        m = await store.open(mid)
        assert m.queued and m.content.startswith(b"Subject: child ")

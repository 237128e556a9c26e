"""The daemon runs on uvloop when it is installed (it is a dependency on Linux), unless told not to."""

from __future__ import annotations

import asyncio

import pytest

from spoolerd import eventloop


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_daemon_loop_is_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPOOLERD_EVENT_LOOP", raising=False)
    assert eventloop.uses_uvloop()
    assert eventloop.run(_loop_module).startswith("uvloop")


def test_asyncio_can_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOOLERD_EVENT_LOOP", "asyncio")
    assert not eventloop.uses_uvloop()
    assert eventloop.run(_loop_module).startswith("asyncio")

"""The DKIM tests' keys: an RSA and an Ed25519 key for example.org, published in a test DNS table."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.dkim.keys import Dns, rsa_key, seed_ed25519


@pytest.fixture
def dns() -> Dns:
    return Dns()


@pytest.fixture
def rsa_file(tmp_path: Path, dns: Dns) -> Path:
    path = tmp_path / "s1.key"
    dns.publish("s1", "example.org", rsa_key(path))
    return path


@pytest.fixture
def ed_file(tmp_path: Path, dns: Dns) -> Path:
    path = tmp_path / "e1.key"
    dns.publish("e1", "example.org", seed_ed25519(path), kind="ed25519")
    return path


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test here runs on asyncio's loop and on uvloop's, which the daemon uses."""
    import uvloop

    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}

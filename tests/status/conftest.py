"""A real daemon (uvloop) relaying through the smtp transport, to watch its status table change."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.maillog.conftest import RelayDaemon, daemons, root
from tests.peers.ports import free_port
from tests.smtp.conftest import certs, smtp_server

__all__ = ["ListenerDaemon", "RelayDaemon", "TwoRelayDaemon", "certs", "daemons", "root", "smtp_server"]


class TwoRelayDaemon(RelayDaemon):
    """The ``relay`` transport fails over between two relays on 127.0.0.1 (``hosts``)."""

    def __init__(self, root: Path, ports: tuple[int, int], *, hold: float | None = None) -> None:
        super().__init__(root, ports[0])
        self.ports = ports
        self.hold = hold  # destination_hold: 0 tries the first relay again at each attempt

    def write_config(self) -> Path:
        cfg = self.root / "spoolerd.toml"
        hosts = json.dumps([f"127.0.0.1:{port}" for port in self.ports])
        retry = "" if self.hold is None else f"[spooler.retry]\ndestination_hold = {self.hold}\n"
        cfg.write_text(
            f'[spooler]\nstate_dir = "{self.root / "state"}"\n[control]\nsocket = "{self.socket}"\n'
            f'[log]\nformat = "json"\nlevel = "info"\n'
            f"{retry}"
            f'[stores.local]\nprovider = "sqlite"\naddresses = ["@localhost"]\n'
            f'[transports.relay]\nprovider = "smtp"\nhosts = {hosts}\ntls = "none"\nhelo = "spool.test"\n'
        )
        return cfg


class ListenerDaemon(RelayDaemon):
    """A relay daemon with SMTP listeners on 127.0.0.1 (``listeners``: name -> port), rewritten by
    ``write_config`` for a reload."""

    def __init__(self, root: Path, listeners: dict[str, int]) -> None:
        super().__init__(root, free_port())
        self.listeners = listeners

    def write_config(self) -> Path:
        cfg = super().write_config()
        listeners = "".join(
            f'[listeners.{name}]\naddress = "127.0.0.1:{port}"\n' for name, port in self.listeners.items()
        )
        cfg.write_text(cfg.read_text() + listeners)
        return cfg


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The tests' side on uvloop, as the daemon's."""
    import uvloop

    return {"uvloop": uvloop.new_event_loop}

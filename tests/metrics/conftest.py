"""A real daemon serving ``[metrics]``, relaying through aiosmtpd; a scrape parsed by prometheus_client's
own parser; an event watcher to know when the daemon has done what a test waits for."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from prometheus_client.parser import text_string_to_metric_families

from tests.control.conftest import Client
from tests.maillog.conftest import RelayDaemon, certs, daemons, root, smtp_server
from tests.peers.ports import free_port

__all__ = ["MetricsDaemon", "Scrape", "certs", "daemons", "root", "scrape", "smtp_server", "watch"]


class MetricsDaemon(RelayDaemon):
    """RelayDaemon with ``[metrics] address`` on a free port (and, optionally, more config)."""

    def __init__(self, root: Path, port: int, *, more: str = "", **relay: Any) -> None:
        super().__init__(root, port, **relay)
        self.metrics_port = free_port()
        self.more = more

    def write_config(self) -> Path:
        cfg = super().write_config()
        with cfg.open("a") as fh:
            fh.write(f'[metrics]\naddress = "127.0.0.1:{self.metrics_port}"\n{self.more}\n')
        return cfg

    async def scrape(self) -> Scrape:
        status, body = await http(self.metrics_port, "GET", "/metrics")
        assert status.startswith(b"HTTP/1.1 200"), status
        return Scrape.parse(body.decode())


@dataclass
class Scrape:
    families: dict[str, Any]  # family name -> prometheus_client Metric
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = {
            (s.name, frozenset(s.labels.items())): s.value for f in families.values() for s in f.samples
        }
        return cls(families, samples)

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def values(self, name: str, **labels: str) -> dict[str, float]:
        """Samples of ``name`` that have ``labels``, by the value of their remaining label (one only)."""
        out = {}
        for (sample, have), value in self.samples.items():
            rest = dict(have)
            if sample == name and all(rest.pop(k, None) == v for k, v in labels.items()):
                ((_, key),) = rest.items()
                out[key] = value
        return out


async def http(port: int, method: str, path: str, raw: bytes | None = None) -> tuple[bytes, bytes]:
    """One request; the status line and the body (the server closes the connection after it)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    try:
        writer.write(raw if raw is not None else f"{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


async def scrape(daemon: MetricsDaemon) -> Scrape:
    return await daemon.scrape()


async def watch(client: Client) -> None:
    await client.stream.send(b'{"id": "w", "cmd": "subscribe"}\n')
    with anyio.fail_after(30):
        assert (await client.line())["event"]["type"] == "subscribed"


async def event(client: Client, kind: str, message_id: str) -> dict[str, Any]:
    """Wait for the spooler's ``kind`` event (delivered, deferred, failed) about one message."""
    with anyio.fail_after(30):
        while True:
            line = (await client.line()).get("event", {})
            if line.get("type") == kind and line.get("id") == message_id:
                return dict(line)


def dump(scrape: Scrape) -> str:
    return json.dumps({f"{n}{sorted(ls)}": v for (n, ls), v in scrape.samples.items()}, indent=1)

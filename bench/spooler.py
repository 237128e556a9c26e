"""Spooler throughput through the engine alone: N messages queued in a SQLite store, delivered by the
loopback transport (each delivery is a second durable write into the store) or by a no-op test transport,
every per-recipient outcome durably recorded.

    python bench/spooler.py [--messages 5000] [--recipients 1] [--transport loopback|null] [--webhook]
                            [--gc tuned|default] [--json FILE]

``--webhook``: with ``[webhooks.bench]`` posting every event to an endpoint in this process (h11), and how
long after the last delivery the last event arrived. ``--gc default`` leaves Python's collector as it is;
``tuned`` (the default) settles it as ``spoolerd run`` does once started (spoolerd/gctuning.py). CPU time
(user + sys, every thread) per message is printed beside the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import h11

from spoolerd import gctuning
from spoolerd.config import parse_config
from spoolerd.daemon import build, running
from spoolerd.message import Draft, FolderRole, NewRecipient
from spoolerd.plugins import PluginRegistry

BODY = (
    b"From: bench@localhost\r\nSubject: bench\r\nDate: x\r\nMessage-ID: <x@y>\r\n\r\n" + b"x" * 4000 + b"\r\n"
)


class Endpoint:
    """Answers 204 to every POST, kept alive, and counts them."""

    def __init__(self, expected: int) -> None:
        self.posts = 0
        self.expected = expected
        self.all_arrived = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.EndOfMessage):
                writer.write(
                    conn.send(h11.Response(status_code=204, headers=[])) + conn.send(h11.EndOfMessage())
                )
                conn.start_next_cycle()
                self.posts += 1
                if self.posts >= self.expected:
                    self.all_arrived.set()
            elif isinstance(event, h11.ConnectionClosed):
                writer.close()
                return


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(
    messages: int, recipients: int, transport: str, tune_gc: bool, webhook: bool = False
) -> dict[str, Any]:
    endpoint = Endpoint(messages * recipients)
    server = await asyncio.start_server(endpoint.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        transports = (
            {"loopback": {"provider": "loopback"}}
            if transport == "loopback"
            else {"null": {"provider": "test-scripted", "concurrency": 64}}
        )
        config = parse_config(
            {
                "spooler": {"state_dir": tmp, "preprocessors": [], "max_in_flight": 128},
                "stores": {"local": {"provider": "sqlite", "addresses": ["@localhost"]}},
                "transports": transports,
                "webhooks": {"bench": {"url": f"http://127.0.0.1:{port}/", "secret_env": "HOME"}}
                if webhook
                else {},
            }
        )
        daemon = build(config, PluginRegistry())
        store = daemon.stores["local"]
        domain = "localhost" if transport == "loopback" else "remote.test"
        async with running(daemon):
            outbox = await store.folder(FolderRole.OUTBOX)
            rcpts = [NewRecipient(f"r{i}@{domain}") for i in range(recipients)]
            ids = await asyncio.gather(
                *(
                    store.create_message(outbox.id, Draft(BODY, rcpts, sender="bench@localhost"))
                    for _ in range(messages)
                )
            )
            if tune_gc:
                gctuning.settle()  # as ``spoolerd run`` does once started
            started, cpu = time.perf_counter(), cpu_seconds()
            await asyncio.gather(*(store.submit(mid) for mid in ids))
            with anyio.fail_after(600):
                while await store.next_due() is not None or daemon.spooler.in_flight:
                    await daemon.spooler.flush()
            elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
            delivered = daemon.spooler.counters.delivered
            if webhook:
                with anyio.fail_after(600):
                    await endpoint.all_arrived.wait()
            events_seconds = time.perf_counter() - started
        server.close()
        return {
            "transport": transport,
            "messages": messages,
            "recipients_per_message": recipients,
            "delivered_recipients": delivered,
            "seconds": elapsed,
            "messages_per_second": messages / elapsed,
            "webhook_events": endpoint.posts,
            "last_event_after_seconds": events_seconds if webhook else 0.0,
            "cpu_ms_per_message": cpu * 1000 / messages,
            "gc": "tuned" if tune_gc else "default",
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--recipients", type=int, default=1)
    parser.add_argument("--transport", choices=["loopback", "null"], default="loopback")
    parser.add_argument("--webhook", action="store_true", help="post every event to a local endpoint")
    parser.add_argument(
        "--gc", choices=["tuned", "default"], default="tuned", help="spoolerd run's, or Python's"
    )
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "spooler.json"))
    args = parser.parse_args()
    result = asyncio.run(
        run(args.messages, args.recipients, args.transport, args.gc == "tuned", args.webhook)
    )
    for key, value in result.items():
        print(f"{key:<24} {value:,.1f}" if isinstance(value, float) else f"{key:<24} {value}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

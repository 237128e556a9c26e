"""What ``[metrics]`` costs at a large queue: the count at start, and a scrape.

    python bench/metrics.py [--queue 20000] [--scrapes 20] [--json FILE]

Fills a fresh SQLite store with ``--queue`` messages (two recipients each, their deferred send time a
day ahead, so the daemon leaves them alone), starts a real daemon on it with ``[metrics]``, and measures:
- the queue count at start (the daemon's own ``queue counted`` line: one scan, then one read per message
  to learn its recipients) and the daemon's start to ready;
- scrapes of /metrics (min, median, max), against ``spoolerctl status``'s queue count, which reads the
  whole queue each time (its ``status`` answer time, for comparison).
Prints a table and writes JSON (default bench/results/metrics.json). Say the load (/proc/loadavg) with
any number you quote: it is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from spoolerd.message import Draft, FolderRole, NewRecipient
from spoolerd.plugins import PluginRegistry
from spoolerd.store import StoreContext

CONTENT = b"From: bench@example.org\r\nTo: r@example.org\r\nSubject: bench\r\n\r\n" + b"x" * 2000 + b"\r\n"


async def prefill(state: Path, count: int) -> None:
    store = PluginRegistry().open_store("sqlite", {}, StoreContext("local", state))
    await store.start()
    outbox = (await store.folder(FolderRole.OUTBOX)).id
    draft = Draft(
        CONTENT,
        [NewRecipient("a@example.net"), NewRecipient("b@example.net")],
        not_before=time.time() + 86400,
    )
    for start in range(0, count, 500):
        await asyncio.gather(*(store.submit_new(outbox, draft) for _ in range(min(500, count - start))))
    await store.stop()


async def get(port: int) -> float:
    began = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
    body = await reader.read()
    writer.close()
    assert b"spoolerd_queue_messages" in body
    return time.perf_counter() - began


async def status(socket: Path) -> float:
    began = time.perf_counter()
    reader, writer = await asyncio.open_unix_connection(str(socket))
    writer.write(b'{"id": 1, "cmd": "status"}\n')
    await reader.readline()
    writer.close()
    return time.perf_counter() - began


async def main(queue: int, scrapes: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bm"))
    state, port = root / "state", _free_port()
    state.mkdir()
    began = time.perf_counter()
    await prefill(state, queue)
    filled = time.perf_counter() - began
    cfg = root / "spoolerd.toml"
    cfg.write_text(
        f'[spooler]\nstate_dir = "{state}"\n[control]\nsocket = "{root / "c.sock"}"\n[log]\nformat = "json"\n'
        f'[metrics]\naddress = "127.0.0.1:{port}"\n'
    )
    began = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spoolerd.cli", "run", "--config", str(cfg), stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    ready = counted = None
    while counted is None:
        line = json.loads(await proc.stderr.readline())
        if line["event"] == "spooler running":
            ready = time.perf_counter() - began
        if line["event"] == "queue counted":
            counted = line
    scrape_times = [await get(port) for _ in range(scrapes)]
    status_times = [await status(root / "c.sock") for _ in range(max(3, scrapes // 5))]
    proc.terminate()
    await proc.wait()
    load = os.getloadavg()
    return {
        "queue": queue,
        "prefill_seconds": round(filled, 2),
        "ready_seconds": round(ready or 0.0, 3),
        "count_seconds": counted["seconds"],
        "counted_messages": counted["messages"],
        "counted_recipients": counted["recipients"],
        "scrape_ms": _spread(scrape_times),
        "status_ms": _spread(status_times),
        "loadavg": [round(x, 2) for x in load],
    }


def _spread(times: list[float]) -> dict[str, float]:
    ms = [t * 1000 for t in times]
    return {"min": round(min(ms), 2), "median": round(statistics.median(ms), 2), "max": round(max(ms), 2)}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue", type=int, default=20000)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--json", default="bench/results/metrics.json")
    args = parser.parse_args()
    result = asyncio.run(main(args.queue, args.scrapes))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    load = " ".join(map(str, result["loadavg"]))
    print(f"queue {result['queue']} (prefill {result['prefill_seconds']} s), load {load}")
    print(f"daemon ready after {result['ready_seconds']} s; queue counted in {result['count_seconds']} s:")
    print(f"  {result['counted_messages']} messages, {result['counted_recipients']} recipients")
    for key in ("scrape_ms", "status_ms"):
        s = result[key]
        print(f"{key:>10}: min {s['min']} ms, median {s['median']} ms, max {s['max']} ms")

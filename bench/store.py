"""Message store micro-benchmark: durable submit throughput and queue scans at 100,000 queued messages.

    python bench/store.py [--provider sqlite] [--queue 100000] [--batch 256] [--two-step] [--json FILE]

Measures, on a fresh store in a temporary directory:
- durable submits/s: each submit is one ``submit_new`` (``--two-step``: create_message + submit, two
  transactions), committed and fsynced before it returns; ``--batch`` callers
  submit concurrently so their commits share fsyncs (group commit);
- the same one at a time (every submit pays its own fsyncs), for comparison;
- with ``--queue`` messages queued: time to list the due head (first page of due, unlocked messages) when
  everything is due and when 99% is deferred into the future, time of next_due(), and a full iteration;
- peak Python memory while iterating the whole queue, at 10% and at 100% of ``--queue``: it must not grow.
Prints a table and writes JSON (default bench/results/store.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from spoolerd.message import Draft, FolderRole, NewRecipient
from spoolerd.plugins import PluginRegistry
from spoolerd.store import MessageStore, StoreContext

CONTENT = b"From: bench@example.org\r\nTo: r@example.org\r\nSubject: bench\r\n\r\n" + b"x" * 4000 + b"\r\n"
HEAD = 100  # how many entries "the due head" is


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def submit_batch(
    store: MessageStore, folder: str, n: int, two_step: bool = False, **draft: Any
) -> list[str]:
    """``n`` concurrent submits; ``two_step``: create_message then submit, as a client that builds a draft
    first (two transactions)."""
    rcpt = [NewRecipient("r@example.org")]

    async def one() -> str:
        if not two_step:
            return await store.submit_new(folder, Draft(CONTENT, rcpt, **draft))
        mid = await store.create_message(folder, Draft(CONTENT, rcpt, **draft))
        await store.submit(mid)
        return mid

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def fill(
    store: MessageStore, folder: str, total: int, batch: int, two_step: bool = False, **draft: Any
) -> float:
    start = time.perf_counter()
    done = 0
    while done < total:
        n = min(batch, total - done)
        await submit_batch(store, folder, n, two_step, **draft)
        done += n
    return time.perf_counter() - start


async def due_head(store: MessageStore, now: float) -> tuple[float, int]:
    start = time.perf_counter()
    got = 0
    async for _ in store.outgoing_queue(due_at=now, include_locked=False):
        got += 1
        if got == HEAD:
            break
    return time.perf_counter() - start, got


async def timed(fn: Any, repeat: int = 7) -> float:
    """Median of ``repeat`` runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def iterate_peak(store: MessageStore) -> tuple[int, int, float]:
    tracemalloc.start()
    start = time.perf_counter()
    count = 0
    async for _ in store.outgoing_queue():
        count += 1
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return count, peak, elapsed


async def run(args: argparse.Namespace) -> dict[str, Any]:
    registry = PluginRegistry()
    results: dict[str, Any] = {
        "provider": args.provider, "queue": args.queue, "batch": args.batch, "two_step": args.two_step
    }  # fmt: skip
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        clock = Clock()
        store = registry.open_store(
            args.provider, {"path": "bench.db"}, StoreContext("bench", Path(tmp), clock)
        )
        await store.start()
        try:
            outbox = (await store.folder(FolderRole.OUTBOX)).id

            commits0 = getattr(store, "commits", None)
            # 99% of the queue is deferred an hour past now (e.g. after failed attempts) and the due 1% is
            # submitted last: the worst case for finding the due head in submission order
            later = clock() + 3600
            serial_n = args.serial
            elapsed = await fill(store, outbox, serial_n, 1, args.two_step, not_before=later)
            results["serial_submits_per_s"] = serial_n / elapsed

            elapsed = await fill(store, outbox, args.measure, args.batch, args.two_step, not_before=later)
            results["batched_submits_per_s"] = args.measure / elapsed
            if commits0 is not None:
                writes = (2 if args.two_step else 1) * (serial_n + args.measure)
                results["writes_per_commit"] = writes / (store.commits - commits0)  # type: ignore[attr-defined]

            tenth = args.queue // 10
            await fill(store, outbox, tenth - serial_n - args.measure, args.batch, not_before=later)
            count, peak_tenth, _ = await iterate_peak(store)
            results["iterate_peak_bytes_at_10pct"] = {"messages": count, "bytes": peak_tenth}
            await fill(store, outbox, args.queue - tenth - args.queue // 100, args.batch, not_before=later)
            await fill(store, outbox, args.queue // 100, args.batch)
            count, peak_full, iter_s = await iterate_peak(store)
            results["iterate_peak_bytes_at_100pct"] = {"messages": count, "bytes": peak_full}
            results["iterate_all_s"] = iter_s

            now = clock()
            results["due_head_all_due_ms"] = 1000 * await timed(lambda: due_head(store, now + 7200))
            results["due_head_mostly_deferred_ms"] = 1000 * await timed(lambda: due_head(store, now))
            results["next_due_ms"] = 1000 * await timed(store.next_due)
            _, got = await due_head(store, now)
            results["due_head_entries"] = got
            results["db_bytes"] = await asyncio.to_thread(db_bytes, tmp)
        finally:
            await store.stop()
    return results


def table(results: dict[str, Any]) -> str:
    q = f"{results['queue']:,}"
    tenth, full = results["iterate_peak_bytes_at_10pct"], results["iterate_peak_bytes_at_100pct"]
    how = "two-step" if results["two_step"] else "submit_new"
    rows = [
        ("each submit is", how),
        (f"durable submits/s, batches of {results['batch']} (target >= 2,000)",
         f"{results['batched_submits_per_s']:,.0f}"),
        ("durable submits/s, one at a time", f"{results['serial_submits_per_s']:,.0f}"),
        ("writes per fsync'd commit (group commit)", f"{results.get('writes_per_commit', 0):.1f}"),
        (f"due head ({HEAD}) of {q} queued, all due (target < 50 ms)",
         f"{results['due_head_all_due_ms']:.2f} ms"),
        (f"due head of {q} queued, 99% deferred (target < 50 ms)",
         f"{results['due_head_mostly_deferred_ms']:.2f} ms"),
        (f"next_due() over {q} queued", f"{results['next_due_ms']:.2f} ms"),
        (f"iterate all {q} queued", f"{results['iterate_all_s']:.2f} s"),
        (f"peak memory iterating {tenth['messages']:,} messages", f"{tenth['bytes'] / 1024:,.0f} KiB"),
        (f"peak memory iterating {full['messages']:,} messages", f"{full['bytes'] / 1024:,.0f} KiB"),
        ("database size", f"{results['db_bytes'] / 2**20:,.0f} MiB"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value:>12}" for name, value in rows)


def db_bytes(directory: str) -> int:
    return sum(f.stat().st_size for f in Path(directory).iterdir() if f.name.startswith("bench.db"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", default="sqlite")
    parser.add_argument("--queue", type=int, default=100_000, help="messages queued for the scan tests")
    parser.add_argument("--batch", type=int, default=256, help="concurrent submits")
    parser.add_argument("--measure", type=int, default=5_000, help="batched submits timed")
    parser.add_argument("--serial", type=int, default=200, help="one-at-a-time submits timed")
    parser.add_argument("--two-step", action="store_true", help="create_message + submit (two commits)")
    parser.add_argument("--dir", default=None, help="where the temporary store lives (default: system tmp)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "store.json"))
    args = parser.parse_args()
    if args.queue < 10 * (args.measure + args.serial):
        sys.exit("--queue must be at least ten times --measure + --serial")
    results = asyncio.run(run(args))
    print(table(results))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()

"""Idle daemon: does it stay asleep? Runs the real ``spoolerd run`` with nothing queued for a window and
reads the kernel's accounting of the whole process (all threads): CPU time and context switches.
Also runs the spooler in-process over the same window and counts its scheduler wake-ups and those of
the Sent Items retention timer.

    python bench/idle.py [--seconds 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from spoolerd.config import parse_config
from spoolerd.daemon import build, running
from spoolerd.plugins import PluginRegistry


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds, context switches) summed over every thread of ``pid``."""
    ticks = os.sysconf("SC_CLK_TCK")
    cpu, switches = 0.0, 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu += (int(fields[11]) + int(fields[12])) / ticks
        for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                switches += int(line.split()[1])
    return cpu, switches


async def daemon_window(seconds: float, state: Path) -> dict[str, Any]:
    cfg = state / "spoolerd.toml"
    cfg.write_text(f'[spooler]\nstate_dir = "{state / "daemon"}"\n[log]\nformat = "json"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spoolerd.cli", "run", "--config", str(cfg), stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    while b"spooler running" not in await proc.stderr.readline():
        pass
    await anyio.sleep(1.0)  # let start-up work settle before the window opens
    cpu0, sw0 = proc_stats(proc.pid)
    await anyio.sleep(seconds)
    cpu1, sw1 = proc_stats(proc.pid)
    proc.terminate()
    await proc.wait()
    return {"cpu_seconds": cpu1 - cpu0, "context_switches": sw1 - sw0}


async def in_process_window(seconds: float, state: Path) -> dict[str, Any]:
    config = parse_config({"spooler": {"state_dir": str(state / "inproc")}})
    daemon = build(config, PluginRegistry())
    async with running(daemon):
        await anyio.sleep(1.0)
        before = daemon.spooler.loop_iterations
        retention_before = sum(keeper.wakeups for keeper in daemon.keepers.values())
        await anyio.sleep(seconds)
        return {
            "scheduler_wakeups": daemon.spooler.loop_iterations - before,
            "retention_wakeups": sum(keeper.wakeups for keeper in daemon.keepers.values()) - retention_before,
        }


async def main_async(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        result = {"window_seconds": seconds}
        result.update(await in_process_window(seconds, state))
        result.update(await daemon_window(seconds, state))
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "idle.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    result = asyncio.run(main_async(args.seconds))
    result["wall_seconds"] = time.perf_counter() - started
    for key, value in result.items():
        print(f"{key:<20} {value}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The daemon's commands to its delivery workers (spoolerd/workers.py): one JSON object a line on the
worker's stdin, a pipe the daemon holds the other end of.

    {"cmd": "reload", "config": {...}}         run on this configuration: the first line a worker is
                                               sent (what it starts on), then after each reload the
                                               daemon applied, however it was asked
    {"cmd": "offline", "transport": "relay"}   an operator's ``spoolerctl offline relay``
    {"cmd": "online", "transport": "relay"}

The configuration is the daemon's running one (``Config``, as JSON), not the file: a file edited but
not reloaded, or a key a reload left for a restart, must not reach a worker started later. It reads
back equal (tested on the reference file of every setting); a TOML date in a plugin's own keys, which
no plugin here has, would come back as its text.

Lines rather than signals: a signal carries no argument, and two of a kind sent close together may
arrive as one. A worker applies each before it reads the next, so a reload that adds a transport comes
before the ``offline`` that names it. A worker started later is told the transports offline then on its
command line (``--offline NAME``), not here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from .config import Config

__all__ = [
    "LINE_LIMIT",
    "WorkerCommand",
    "decode",
    "encode",
    "line_problems",
    "online_command",
    "reload_command",
]

LINE_LIMIT = 1 << 24  # octets a line may have (a worker reads no longer one): a configuration, as JSON

Kind = Literal["reload", "offline", "online"]


@dataclass(frozen=True, slots=True)
class WorkerCommand:
    cmd: Kind
    transport: str | None = None  # offline, online: the transport's name
    config: dict[str, Any] | None = None  # reload: the daemon's running configuration, as data


def reload_command(config: Config) -> WorkerCommand:
    """Run on ``config`` (``parse_config`` reads it back: the keys by their names in the file)."""
    return WorkerCommand("reload", config=config.model_dump(mode="json", by_alias=True))


def online_command(transport: str, online: bool) -> WorkerCommand:
    return WorkerCommand("online" if online else "offline", transport)


def encode(command: WorkerCommand) -> bytes:
    fields: dict[str, Any] = {"cmd": command.cmd}
    if command.transport is not None:
        fields["transport"] = command.transport
    if command.config is not None:
        fields["config"] = command.config
    return json.dumps(fields).encode() + b"\n"


def decode(line: bytes) -> WorkerCommand:
    """One line as ``encode`` wrote it; ValueError: not a command the daemon sends."""
    try:
        fields = json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        fields = None
    if isinstance(fields, dict):
        cmd, transport, config = fields.get("cmd"), fields.get("transport"), fields.get("config")
        if cmd == "reload" and transport is None and isinstance(config, dict):
            return WorkerCommand("reload", config=config)
        if isinstance(transport, str):
            if cmd == "offline":
                return WorkerCommand("offline", transport)
            if cmd == "online":
                return WorkerCommand("online", transport)
    raise ValueError(f"not a worker command: {line[:200]!r}")


def line_problems(config: Config) -> list[str]:
    """A configuration too large to reach a delivery worker in one line is refused where it is checked
    (start, ``check-config``, a reload), not met by a worker that cannot read it and dies again at each
    restart."""
    if config.spooler.workers == 1:
        return []
    size = len(encode(reload_command(config)))
    if size <= LINE_LIMIT:
        return []
    return [
        f"spooler.workers: the configuration is {size:,} octets as JSON, more than a delivery worker takes"
        f" ({LINE_LIMIT:,}); use workers = 1, or a smaller configuration"
    ]

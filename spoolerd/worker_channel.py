"""The daemon's commands to its delivery workers (spoolerd/workers.py): one JSON object a line on the
worker's stdin, a pipe the daemon holds the other end of.

    {"cmd": "reload"}                          read the configuration file again (the daemon's reload,
                                               however it was asked, was applied)
    {"cmd": "offline", "transport": "relay"}   an operator's ``spoolerctl offline relay``
    {"cmd": "online", "transport": "relay"}

Lines rather than signals: a signal carries no argument, and two of a kind sent close together may
arrive as one. A worker applies each before it reads the next, so a reload that adds a transport comes
before the ``offline`` that names it. A worker started later is told the transports offline then on its
command line (``--offline NAME``), not here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

__all__ = ["RELOAD", "WorkerCommand", "decode", "encode", "online_command"]

Kind = Literal["reload", "offline", "online"]


@dataclass(frozen=True, slots=True)
class WorkerCommand:
    cmd: Kind
    transport: str | None = None  # offline, online: the transport's name


RELOAD = WorkerCommand("reload")


def online_command(transport: str, online: bool) -> WorkerCommand:
    return WorkerCommand("online" if online else "offline", transport)


def encode(command: WorkerCommand) -> bytes:
    fields: dict[str, str] = {"cmd": command.cmd}
    if command.transport is not None:
        fields["transport"] = command.transport
    return json.dumps(fields).encode() + b"\n"


def decode(line: bytes) -> WorkerCommand:
    """One line as ``encode`` wrote it; ValueError: not a command the daemon sends."""
    try:
        fields = json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        fields = None
    if isinstance(fields, dict):
        cmd, transport = fields.get("cmd"), fields.get("transport")
        if cmd == "reload" and transport is None:
            return RELOAD
        if isinstance(transport, str):
            if cmd == "offline":
                return WorkerCommand("offline", transport)
            if cmd == "online":
                return WorkerCommand("online", transport)
    raise ValueError(f"not a worker command: {line[:200]!r}")

"""The daemon's command lines to its workers (spoolerd/worker_channel.py), in memory."""

from __future__ import annotations

import pytest

from spoolerd.worker_channel import RELOAD, WorkerCommand, decode, encode, online_command


@pytest.mark.parametrize(
    "command",
    [RELOAD, online_command("relay", False), online_command("relay", True), online_command('a "b"\n', False)],
)
def test_a_command_is_one_line_and_reads_back(command: WorkerCommand) -> None:
    line = encode(command)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == command


@pytest.mark.parametrize(
    "line",
    [
        b"reload\n",
        b"\xff\xfe\n",
        b"[]\n",
        b'{"cmd": "shutdown"}\n',
        b'{"cmd": "offline"}\n',
        b'{"cmd": "online", "transport": 7}\n',
        b'{"cmd": "reload", "transport": "relay"}\n',
    ],
)
def test_anything_else_is_refused(line: bytes) -> None:
    with pytest.raises(ValueError, match="not a worker command"):
        decode(line)

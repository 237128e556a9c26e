"""The daemon's command lines to its workers (spoolerd/worker_channel.py), in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from spoolerd.config import load_config, parse_config
from spoolerd.plugins import PluginRegistry
from spoolerd.worker_channel import WorkerCommand, decode, encode, online_command, reload_command

REFERENCE = Path(__file__).parents[1] / "config" / "spoolerd.toml"  # every setting, each with a value


@pytest.mark.parametrize(
    "command",
    [
        reload_command(load_config(REFERENCE, PluginRegistry())),
        online_command("relay", False),
        online_command("relay", True),
        online_command('a "b"\n', False),
    ],
)
def test_a_command_is_one_line_and_reads_back(command: WorkerCommand) -> None:
    line = encode(command)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == command


def test_a_worker_reads_back_the_daemons_configuration_as_it_is() -> None:
    """What a worker runs on is the daemon's configuration, every setting of the file's, equal."""
    registry = PluginRegistry()
    running = load_config(REFERENCE, registry)
    sent = decode(encode(reload_command(running)))
    assert sent.config is not None
    assert parse_config(sent.config, str(REFERENCE), registry) == running


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
        b'{"cmd": "reload"}\n',
        b'{"cmd": "reload", "config": "spoolerd.toml"}\n',
    ],
)
def test_anything_else_is_refused(line: bytes) -> None:
    with pytest.raises(ValueError, match="not a worker command"):
        decode(line)

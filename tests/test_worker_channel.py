"""The daemon's command lines to its workers (spoolerd/worker_channel.py), in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from spoolerd import worker_channel
from spoolerd.assembly import build
from spoolerd.config import load_config, parse_config
from spoolerd.errors import ConfigError
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


@pytest.mark.parametrize("workers", [1, 2])
def test_a_configuration_too_long_for_a_workers_line_is_refused_where_it_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """A worker reads its configuration as one line of at most ``LINE_LIMIT`` octets; a longer one used
    to kill each worker it was sent to, again at every restart. Now start, check-config and a reload
    (each builds the daemon) refuse it, naming the setting; with no worker there is no line to send."""
    path = tmp_path / "spoolerd.toml"
    path.write_text(
        f'[spooler]\nstate_dir = "{tmp_path}"\nworkers = {workers}\n'
        f'[stores.local]\nprovider = "sqlite"\naddresses = ["@localhost"]\n'
        f'[transports.loop]\nprovider = "loopback"\n'
    )
    registry = PluginRegistry()
    config = load_config(path, registry)
    size = len(encode(reload_command(config)))
    monkeypatch.setattr(worker_channel, "LINE_LIMIT", size - 1)
    if workers == 1:
        build(config, registry)
        return
    with pytest.raises(ConfigError) as refused:
        build(config, registry)
    assert [p for p in refused.value.problems if p.startswith("spooler.workers:")] == [
        f"spooler.workers: the configuration is {size:,} octets as JSON, more than a delivery worker takes"
        f" ({size - 1:,}); use workers = 1, or a smaller configuration"
    ]
    monkeypatch.setattr(worker_channel, "LINE_LIMIT", size)
    build(config, registry)


async def test_a_reload_checks_the_line_the_running_workers_would_be_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that says ``workers = 1`` waits for a restart: the worker running meanwhile is still sent
    each reload, so the line is checked for it, not by the file's count."""
    from spoolerd.reconfigure import reload

    source = tmp_path / "spoolerd.toml"
    text = f'[spooler]\nstate_dir = "{tmp_path}"\nworkers = 2\n[transports.loop]\nprovider = "loopback"\n'
    source.write_text(text)
    registry = PluginRegistry()
    daemon = build(load_config(source, registry), registry, source=str(source))
    size = len(encode(reload_command(daemon.config)))
    source.write_text(text.replace("workers = 2", "workers = 1"))
    monkeypatch.setattr(worker_channel, "LINE_LIMIT", size - 1)
    with pytest.raises(ConfigError) as refused:
        await reload(daemon)
    assert [p for p in refused.value.problems if p.startswith("spooler.workers:")]
    monkeypatch.setattr(worker_channel, "LINE_LIMIT", size)
    assert (await reload(daemon)).restart_needed == ["spooler.workers"]

"""The ``spoolerd`` command: run, check-config, exit codes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from spoolerd.cli import EX_CONFIG, main

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "spoolerd.toml"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("spoolerd 0.")


def test_check_config_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(EXAMPLE)]) == 0
    assert "ok" in capsys.readouterr().out


def test_check_config_names_every_bad_key_and_exits_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[spooler]\nmax_in_flight = 0\n[stores.local]\nprovider = "sqlite"\nbusy_timeout = "soon"\n'
        '[transports.x]\nprovider = "nope"\n'
    )
    assert main(["check-config", str(bad)]) == EX_CONFIG
    err = capsys.readouterr().err
    for key in ("spooler.max_in_flight", "stores.local.busy_timeout", "transports.x.provider"):
        assert key in err, err


async def test_run_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    cfg = tmp_path / "spoolerd.toml"
    cfg.write_text(f'[spooler]\nstate_dir = "{tmp_path / "state"}"\n[log]\nformat = "json"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spoolerd.cli", "run", "--config", str(cfg), stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    with anyio.fail_after(20):
        while b"spooler running" not in await proc.stderr.readline():
            pass
        second = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "spoolerd.cli", "run", "--config", str(cfg), stderr=subprocess.PIPE
        )
        _, second_err = await second.communicate()
        assert second.returncode != 0 and b"another spoolerd is running" in second_err
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
    assert (tmp_path / "state" / "spool.db").exists()


async def test_a_bad_config_exits_78_without_touching_the_state(tmp_path: Path) -> None:
    cfg = tmp_path / "spoolerd.toml"
    cfg.write_text(f'[spooler]\nstate_dir = "{tmp_path / "state"}"\nlease = "long"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spoolerd.cli", "run", "--config", str(cfg), stderr=subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == EX_CONFIG
    assert b"spooler.lease" in err
    assert not (tmp_path / "state").exists()


def test_check_config_resolves_control_groups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "groups.toml"
    bad.write_text('[control]\nallowed_groups = ["no-such-group-here"]\n')
    assert main(["check-config", str(bad)]) == EX_CONFIG
    assert "control.allowed_groups: no group named 'no-such-group-here'" in capsys.readouterr().err

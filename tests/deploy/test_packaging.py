"""The distribution: sdist and wheel build, hold the three packages and the entry points, install into a
fresh venv, and run there; the README's plugin example, built and installed beside it, is loaded by the
daemon through its entry point and delivers."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import anyio
import pytest

import spoolerd
from tests.conftest import reap

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def run(*argv: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=600, check=False, **kwargs
    )  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """sdist and wheel, built from a copy of the sources (the build writes into its source tree)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "spoolerd", "stores", "transports", "config"):
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", out, src)
    (wheel,) = out.glob("spoolerd-*.whl")
    (sdist,) = out.glob("spoolerd-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_wheel_and_sdist_hold_the_packages_and_entry_points(built: dict[str, Path]) -> None:
    assert built["wheel"].name.startswith(f"spoolerd-{spoolerd.__version__}-")
    names = zipfile.ZipFile(built["wheel"]).namelist()
    for module in (
        "spoolerd/__init__.py", "spoolerd/py.typed", "spoolerd/dkim.py", "spoolerd/conform.py",
        "stores/sqlite/store.py", "stores/py.typed",
        "transports/loopback.py", "transports/smtp/transport.py", "transports/py.typed",
        "stores/postgres/store.py", "stores/postgres/testing.py", "stores/sqlite/testing.py",
        "spoolerd/testing/plugin.py", "spoolerd/testing/store_child.py",
        "spoolerd/testing/conformance/__init__.py", "spoolerd/testing/conformance/queue.py",
    ):  # fmt: skip
        assert module in names, module
    assert not any(n.startswith("tests/") for n in names)
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(built["wheel"]).read(entry_points).decode()
    for line in (
        "sqlite = stores.sqlite:SqliteStore", "postgres = stores.postgres:PostgresStore",
        "loopback = transports.loopback:LoopbackTransport",
        "smtp = transports.smtp:SmtpTransport", "headers = spoolerd.preprocess:HeadersPreprocessor",
        "dkim = spoolerd.dkim:DkimPreprocessor",
        "spoolerd = spoolerd.cli:main", "spoolerctl = spoolerd.ctl:main",
        "spoolerd-sendmail = spoolerd.sendmail:main",
    ):  # fmt: skip
        assert line in text, line
    with tarfile.open(built["sdist"]) as sdist:
        members = sdist.getnames()
    top = members[0].split("/")[0]
    for path in ("pyproject.toml", "README.md", "spoolerd/cli.py", "transports/smtp/session.py"):
        assert f"{top}/{path}" in members, path


def readme_files() -> dict[str, str]:
    """The README's code blocks that start with ``# file: NAME``: the plugin example."""
    blocks = re.findall(
        r"```(?:toml|python)\n# file: (\S+)\n(.*?)```", (ROOT / "README.md").read_text(), re.S
    )
    return dict(blocks)


async def test_fresh_venv_install_runs_the_daemon_with_the_readme_plugin(
    built: dict[str, Path], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    await anyio.to_thread.run_sync(lambda: run(sys.executable, "-m", "venv", venv))
    bin_ = venv / "bin"
    await anyio.to_thread.run_sync(lambda: run(bin_ / "pip", "install", "--quiet", built["wheel"]))
    version = await anyio.to_thread.run_sync(lambda: run(bin_ / "spoolerd", "--version"))
    assert version.stdout.strip() == f"spoolerd {spoolerd.__version__}"

    plugin = tmp_path / "plugin"
    files = readme_files()
    assert set(files) == {"pyproject.toml", "spoolerd_files.py"}
    for name, text in files.items():
        (plugin / name).parent.mkdir(parents=True, exist_ok=True)
        (plugin / name).write_text(text)
    await anyio.to_thread.run_sync(lambda: run(bin_ / "pip", "install", "--quiet", "--no-deps", plugin))

    outdir, sock = tmp_path / "filed", tmp_path / "c.sock"
    cfg = tmp_path / "spoolerd.toml"
    cfg.write_text(
        f'[spooler]\nstate_dir = "{tmp_path / "state"}"\n[control]\nsocket = "{sock}"\n'
        f'[transports.files]\nprovider = "files"\ndirectory = "{outdir}"\ndomain = "example.org"\n'
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")} | {
        "SPOOLERD_SOCKET": str(sock)
    }
    await anyio.to_thread.run_sync(lambda: run(bin_ / "spoolerd", "check-config", cfg, env=env))
    proc = await asyncio.create_subprocess_exec(
        bin_ / "spoolerd", "run", "--config", cfg, env=env, stderr=subprocess.PIPE
    )
    try:
        assert proc.stderr is not None
        with anyio.fail_after(30):
            while b"spooler running" not in (line := await proc.stderr.readline()):
                assert line, "the daemon exited before it was ready"
        sent = await anyio.run_process(
            [bin_ / "spoolerd-sendmail", "-i", "bob@example.org"],
            input=b"Subject: plugin\n\nhello\n",
            env=env,
        )
        assert sent.returncode == 0
        await anyio.run_process([bin_ / "spoolerctl", "flush"], env=env)
        (filed,) = list(outdir.glob("*.eml"))
        assert filed.read_bytes().endswith(b"\r\nhello\r\n") or filed.read_bytes().endswith(b"\nhello\n")
        proc.terminate()
        with anyio.fail_after(30):
            assert await proc.wait() == 0
    finally:
        await reap(proc)

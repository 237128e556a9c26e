"""The Dockerfile, checked without a Docker engine (there is none on these machines): hadolint accepts
it, the build context keeps what the build copies, and the image's entry point, run here the way the
image runs it (its ENV, its config file, as PID 1 of a new PID namespace), starts, answers its
HEALTHCHECK, takes mail through sendmail, flushes, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from spoolerd.cli import main as spoolerd_main
from tests.conftest import reap

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip().removesuffix("\\") + (" " if line.rstrip().endswith("\\") else "")
        if not line.rstrip().endswith("\\"):
            joined.append(current)
            current = ""
    found = [(text.split(None, 1)[0].upper(), text.split(None, 1)[1].strip()) for text in joined]
    last_from = max(i for i, (name, _) in enumerate(found) if name == "FROM")
    return found[last_from:]


def one(name: str) -> str:
    (value,) = [args for instr, args in instructions() if instr == name]
    return value


def env() -> dict[str, str]:
    values: dict[str, str] = {}
    for instr, args in instructions():
        if instr == "ENV":
            for pair in args.split():
                key, _, value = pair.partition("=")
                values[key] = value
    return values


def test_hadolint_accepts_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_build_context_keeps_what_the_build_copies() -> None:
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            bare = pattern.removeprefix("!").rstrip("/")
            if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/") or bare == "**":
                keep = negate
        return keep

    copied = [src for args in _copies() if not args.startswith("--from") for src in args.split()[:-1]]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert included(source.rstrip("/")), f"{source} is excluded by .dockerignore"
    for junk in (".git", ".venv", "spool", "bench/results", "tests"):
        assert not included(junk), f"{junk} would be sent to the Docker daemon"


def _copies() -> list[str]:
    """Every stage's COPY arguments (the build stage copies the sources)."""
    return [line[5:].strip() for line in DOCKERFILE.read_text().splitlines() if line.startswith("COPY ")]


def test_the_image_contract() -> None:
    values = env()
    assert one("USER").split(":")[0].isdigit() and one("USER").split(":")[0] != "0"  # numeric, not root
    volumes = json.loads(one("VOLUME"))
    assert values["STATE_DIRECTORY"] in volumes and values["RUNTIME_DIRECTORY"] in volumes
    assert json.loads(one("ENTRYPOINT")) == ["spoolerd"] and json.loads(one("CMD")) == ["run"]
    assert one("HEALTHCHECK").split("CMD", 1)[1].strip() == '["spoolerctl", "status"]'
    link = "ln -s /usr/local/bin/spoolerd-sendmail /usr/sbin/sendmail"
    assert any(link in args for instr, args in instructions() if instr == "RUN")
    assert 'spoolerd-sendmail = "spoolerd.sendmail:main"' in (ROOT / "pyproject.toml").read_text()
    assert spoolerd_main(["check-config", str(container_config())]) == 0


def container_config() -> Path:
    """The repository file the image copies to $SPOOLERD_CONFIG."""
    target = env()["SPOOLERD_CONFIG"]
    (source,) = [a.split()[0] for i, a in instructions() if i == "COPY" and a.split()[-1] == target]
    return ROOT / source


def _bin(name: str) -> str:
    return shutil.which(name) or str(Path(sys.executable).parent / name)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="PID namespaces need root")
async def test_the_entry_point_runs_as_pid_1_the_way_the_image_runs_it(tmp_path: Path) -> None:
    environ = {**os.environ, **env()}
    environ |= {
        "STATE_DIRECTORY": str(tmp_path / "state"),
        "RUNTIME_DIRECTORY": str(tmp_path / "run"),
        "SPOOLERD_CONFIG": str(container_config()),
    }
    for var in ("STATE_DIRECTORY", "RUNTIME_DIRECTORY"):
        await anyio.Path(environ[var]).mkdir(mode=0o750)
    command = [_bin(json.loads(one("ENTRYPOINT"))[0]), *json.loads(one("CMD"))]
    proc = await asyncio.create_subprocess_exec(
        "unshare", "--pid", "--fork", "--kill-child", "--", *command, env=environ, stderr=subprocess.PIPE
    )
    try:
        assert proc.stderr is not None
        with anyio.fail_after(30):
            while b"spooler running" not in (line := await proc.stderr.readline()):
                assert line, "the daemon exited before it was ready"
        assert json.loads(line)["event"] == "spooler running"  # the image's config logs JSON
        (pid1,) = (await anyio.Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text()).split()
        status = await anyio.Path(f"/proc/{pid1}/status").read_text()
        (nspid,) = [line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")]
        assert nspid[-1] == "1"  # PID 1 in its namespace, as in a container

        health = json.loads(one("HEALTHCHECK").split("CMD", 1)[1])
        for argv, stdin in (
            ([_bin(health[0]), *health[1:]], b""),
            ([_bin("spoolerd-sendmail"), "-i", "alice@localhost"], b"Subject: from the image\n\nhi\n"),
            ([_bin("spoolerctl"), "flush"], b""),
        ):
            done = await anyio.run_process(argv, input=stdin, env=environ, check=False)
            assert done.returncode == 0, (argv, done.stdout, done.stderr)
        os.kill(int(pid1), signal.SIGTERM)  # what docker stop sends (STOPSIGNAL)
        with anyio.fail_after(30):
            assert await proc.wait() == 0
    finally:
        await reap(proc)

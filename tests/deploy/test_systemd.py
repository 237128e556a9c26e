"""config/spoolerd.service: systemd accepts it, and the daemon runs the way it starts it."""

from __future__ import annotations

import asyncio
import grp
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

import spoolerd
from spoolerd.client import ControlClient
from tests.conftest import reap

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "config" / "spoolerd.service"
README = ROOT / "README.md"
ANALYZE = shutil.which("systemd-analyze")
NOBODY = 65534


def unit_with_this_spoolerd(tmp: Path, text: str | None = None) -> Path:
    """The unit with ExecStart pointing at the spoolerd installed here (verify checks it exists)."""
    binary = shutil.which("spoolerd") or str(Path(sys.executable).parent / "spoolerd")
    unit = tmp / "spoolerd.service"
    unit.write_text((text or UNIT.read_text()).replace("/opt/spoolerd/bin/spoolerd", binary))
    return unit


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_has_what_the_daemon_relies_on() -> None:
    d = directives()
    for key, value in {
        "Type": "notify", "NotifyAccess": "main", "RuntimeDirectory": "spoolerd",
        "StateDirectory": "spoolerd", "RestartPreventExitStatus": "78", "Restart": "on-failure",
        "ProtectSystem": "strict",
        "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "User": "spoolerd",
    }.items():  # fmt: skip
        assert d.get(key) == [value], key
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"] and d["WatchdogSec"]


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (.ci/run installs systemd)")
def test_systemd_analyze_verify_accepts_the_unit_and_rejects_a_broken_one(tmp_path: Path) -> None:
    assert ANALYZE is not None
    good = subprocess.run(
        [ANALYZE, "verify", str(unit_with_this_spoolerd(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0 and "spoolerd.service" not in good.stderr, good.stderr
    broken_dir = tmp_path / "broken"
    broken_dir.mkdir()
    broken = unit_with_this_spoolerd(broken_dir, UNIT.read_text().replace("Type=notify", "Type=sometimes"))
    bad = subprocess.run([ANALYZE, "verify", str(broken)], capture_output=True, text=True, check=False)
    assert "spoolerd.service" in bad.stderr and "service type" in bad.stderr  # the check can fail


def _readable_by_others(path: Path) -> bool:
    """Whether an unprivileged user can reach ``path`` (every parent o+x, the file o+r)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if parent != path and not mode & stat.S_IXOTH:
            return False
    return bool(path.stat().st_mode & stat.S_IROTH)


@dataclass
class Unit:
    """A daemon started the way the unit starts it; ``run_dir`` / ``state_dir`` are its directories."""

    proc: asyncio.subprocess.Process
    run_dir: Path
    state_dir: Path

    async def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert await self.proc.wait() == 0


@asynccontextmanager
async def as_the_unit(
    root: Path, command: list[str], uid: int, groups: list[int], env: dict[str, str] | None = None
) -> AsyncIterator[Unit]:
    """Run ``command`` as the unit would: as ``uid`` (its own group) with the supplementary ``groups``,
    in the RuntimeDirectory= and StateDirectory= it creates (owned by the user, the unit's modes), with
    the notify protocol; yields once the daemon says READY=1."""
    unit = directives()
    run_dir, state_dir = root / "run", root / "state"
    for d, key in ((run_dir, "RuntimeDirectoryMode"), (state_dir, "StateDirectoryMode")):
        d.mkdir()
        os.chmod(d, int(unit[key][0], 8))
        os.chown(d, uid, uid)
    notify_path = root / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_path))
    os.chmod(notify_path, 0o777)
    receiver.setblocking(False)
    environ = {k: v for k, v in os.environ.items() if k not in ("SPOOLERD_CONFIG", "SPOOLERD_SOCKET")}
    environ.update(
        NOTIFY_SOCKET=str(notify_path), RUNTIME_DIRECTORY=str(run_dir), STATE_DIRECTORY=str(state_dir)
    )
    membership = [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
    proc = await asyncio.create_subprocess_exec(
        "setpriv", f"--reuid={uid}", f"--regid={uid}", *membership, *command,
        env={**environ, **(env or {})}, cwd=root, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    try:
        with anyio.fail_after(30):
            while b"READY=1" not in await loop.sock_recv(receiver, 4096):
                pass
        yield Unit(proc, run_dir, state_dir)
    finally:
        await reap(proc)
        receiver.close()


def new_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="spd"))  # short: a socket path has at most 107 bytes
    os.chmod(root, 0o755)
    return root


@pytest.mark.skipif(os.geteuid() != 0, reason="running as another user (setpriv) needs root")
async def test_the_daemon_as_the_unit_runs_it_becomes_ready_and_serves_flush() -> None:
    package = Path(spoolerd.__file__)
    if not _readable_by_others(package):
        pytest.skip(f"{package} is not readable by an unprivileged user in this checkout")
    command = [sys.executable, "-m", "spoolerd.cli", "run"]
    async with as_the_unit(new_root(), command, NOBODY, []) as unit:
        sock = unit.run_dir / "control.sock"
        assert sock.stat().st_uid == NOBODY and oct(sock.stat().st_mode & 0o777) == "0o660"

        def flush() -> dict[str, int]:
            with ControlClient(sock) as client:  # root may always use the socket
                client.call("submit", message="VG86IGFsaWNlQGxvY2FsaG9zdA0KDQpoaQ0K")  # To: alice@localhost
                return client.call("flush")  # type: ignore[no-any-return]

        counts = await anyio.to_thread.run_sync(flush)
        assert counts["failed"] == 0
        assert (unit.state_dir / "spool.db").stat().st_uid == NOBODY  # the store belongs to the service user
        await unit.stop()


def recipe() -> list[str]:
    """The README's systemd recipe, line by line."""
    section = README.read_text().split("## Running under systemd", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def shell(line: str, cwd: Path, **substitutions: str) -> subprocess.CompletedProcess[str]:
    for old, new in substitutions.items():
        line = line.replace(old, new)
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", line],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="running as other users (setpriv) needs root")
async def test_the_readme_recipe_installs_a_unit_that_runs_and_takes_mail_from_the_mail_group() -> None:
    """The recipe's steps that can run here, as written: the venv (PEP 668 refuses a system-wide pip),
    check-config of the shipped config, the unit's ExecStart in that venv, and the daemon run from it as
    the unit runs it, with the shipped config: a sender in the allowed group submits, another user is
    told that the socket's permissions refused it."""
    steps = recipe()
    venv_step = next(line for line in steps if " -m venv " in line)
    prefix = venv_step.split(" -m venv ", 1)[1].split()[0]
    (binary, *_) = directives()["ExecStart"][0].split()
    assert binary == f"{prefix}/bin/spoolerd"  # the unit starts what the recipe installed
    assert any(
        line.endswith("install -m 640 -g spoolerd config/spoolerd.toml /etc/spoolerd/") for line in steps
    )
    assert directives()["SupplementaryGroups"] == ["mail"]

    root = new_root()
    src = root / "src"  # pip builds in the source tree: a copy, not this checkout
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build", "tests"),
    )
    venv = root / "opt"
    done = await anyio.to_thread.run_sync(lambda: shell(venv_step, src, **{prefix: str(venv)}))
    assert done.returncode == 0, done.stderr
    installed = venv / "bin" / "spoolerd"
    assert os.access(installed, os.X_OK)

    etc = root / "etc"
    etc.mkdir()
    config = etc / "spoolerd.toml"
    shutil.copy(src / "config" / "spoolerd.toml", config)
    check_step = next(line for line in steps if line.startswith("spoolerd check-config "))
    done = shell(check_step, src, **{"spoolerd ": f"{installed} ", "/etc/spoolerd": str(etc)})
    assert (done.returncode, done.stdout) == (0, f"{config}: ok\n"), done.stderr

    daemon_uid, mail = 64999, grp.getgrnam("mail").gr_gid  # spoolerd: a system user of its own
    os.chown(config, 0, daemon_uid)  # install -m 640 -g spoolerd
    os.chmod(config, 0o640)
    # the shipped config names /var/lib/spoolerd, which is StateDirectory=; here a temporary one
    command = [str(installed), "run", "--config", str(config)]
    unit_env = {"SPOOLERD__SPOOLER__STATE_DIR": str(root / "state")}
    async with as_the_unit(root, command, daemon_uid, [mail], unit_env) as unit:
        sock = unit.run_dir / "control.sock"
        assert (sock.stat().st_uid, sock.stat().st_gid) == (daemon_uid, mail)
        sendmail = str(venv / "bin" / "spoolerd-sendmail")
        env = {"SPOOLERD_SOCKET": str(sock), "PATH": os.environ["PATH"]}

        def as_nobody(*command: str, groups: tuple[str, ...] = ()) -> subprocess.CompletedProcess[bytes]:
            membership = [f"--groups={','.join(groups)}"] if groups else ["--clear-groups"]
            return subprocess.run(
                ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", *membership, *command],
                input=b"Subject: from cron\n\nhi\n", capture_output=True, env=env, cwd=root, timeout=60,
                check=False,
            )  # fmt: skip

        member = await anyio.to_thread.run_sync(
            lambda: as_nobody(sendmail, "postmaster@example.org", groups=(str(mail),))
        )
        assert member.returncode == 0, member.stderr
        # outside the group: refused by the socket, each command saying so (not "no daemon")
        for command, code, says in (
            ((sendmail, "postmaster@example.org"), 77, "spoolerd-sendmail"),
            ((sendmail, "-bp"), 77, "spoolerd-sendmail"),  # as delivery mode: 77, not 69 (unavailable)
            ((str(venv / "bin" / "spoolerctl"), "--socket", str(sock), "status"), 1, "spoolerctl"),  # not 3
        ):
            stranger = await anyio.to_thread.run_sync(lambda c=command: as_nobody(*c))  # type: ignore[misc]
            assert stranger.returncode == code, (command, stranger.stderr)
            assert stranger.stderr.decode().startswith(f"{says}: permission denied on {sock}"), (
                stranger.stderr
            )

        def inbox() -> list[dict[str, str]]:
            with ControlClient(sock) as client:
                client.call("flush")  # waits for an attempt in flight
                return client.call("list", folder="inbox")  # type: ignore[no-any-return]

        (delivered,) = await anyio.to_thread.run_sync(inbox)  # the member's mail, delivered locally
        assert delivered["subject"] == "from cron"
        await unit.stop()

"""config/spoolerd.service: systemd accepts it, and the daemon runs the way it starts it."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio
import pytest

import spoolerd
from spoolerd.client import ControlClient
from tests.conftest import reap

UNIT = Path(__file__).resolve().parents[2] / "config" / "spoolerd.service"
ANALYZE = shutil.which("systemd-analyze")
NOBODY = 65534


def unit_with_this_spoolerd(tmp: Path, text: str | None = None) -> Path:
    """The unit with ExecStart pointing at the spoolerd installed here (verify checks it exists)."""
    binary = shutil.which("spoolerd") or str(Path(sys.executable).parent / "spoolerd")
    unit = tmp / "spoolerd.service"
    unit.write_text((text or UNIT.read_text()).replace("/usr/local/bin/spoolerd", binary))
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


@pytest.mark.skipif(os.geteuid() != 0, reason="running as another user (setpriv) needs root")
async def test_the_daemon_as_the_unit_runs_it_becomes_ready_and_serves_flush() -> None:
    package = Path(spoolerd.__file__)
    if not _readable_by_others(package):
        pytest.skip(f"{package} is not readable by an unprivileged user in this checkout")
    root = Path(tempfile.mkdtemp(prefix="spd"))
    os.chmod(root, 0o755)
    run_dir, state_dir = root / "run", root / "state"
    for d in (run_dir, state_dir):  # what RuntimeDirectory= and StateDirectory= create for the user
        d.mkdir(mode=0o750)
        os.chown(d, NOBODY, NOBODY)
    notify_path = root / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_path))
    os.chmod(notify_path, 0o777)
    receiver.setblocking(False)
    env = {k: v for k, v in os.environ.items() if k not in ("SPOOLERD_CONFIG", "SPOOLERD_SOCKET")}
    env.update(NOTIFY_SOCKET=str(notify_path), RUNTIME_DIRECTORY=str(run_dir), STATE_DIRECTORY=str(state_dir))
    proc = await asyncio.create_subprocess_exec(
        "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
        sys.executable, "-m", "spoolerd.cli", "run", env=env, cwd=root, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    try:
        with anyio.fail_after(30):
            while b"READY=1" not in await loop.sock_recv(receiver, 4096):
                pass
        sock = run_dir / "control.sock"
        assert sock.stat().st_uid == NOBODY and oct(sock.stat().st_mode & 0o777) == "0o660"

        def flush() -> dict[str, int]:
            with ControlClient(sock) as client:  # root may always use the socket
                client.call("submit", message="VG86IGFsaWNlQGxvY2FsaG9zdA0KDQpoaQ0K")  # To: alice@localhost
                return client.call("flush")  # type: ignore[no-any-return]

        counts = await anyio.to_thread.run_sync(flush)
        assert counts["failed"] == 0
        assert (state_dir / "spool.db").stat().st_uid == NOBODY  # the store belongs to the service user
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert await proc.wait() == 0
    finally:
        await reap(proc)
        receiver.close()

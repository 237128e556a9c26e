"""A private PostgreSQL cluster in a temporary directory, for the tests that stop, restart or cut the
server under running daemons (the machine's own server is never touched). initdb refuses root, so as
root the cluster belongs to the ``postgres`` user. Recipe: ../shared/PEERS.md."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.peers.ports import free_port

__all__ = ["PrivateCluster", "available"]


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def available() -> str | None:
    """Why a private cluster cannot run here, or None if it can."""
    if _bin_dir() is None:
        return "PostgreSQL's server programs are not installed (.ci/run installs postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "as root a private cluster needs runuser to run initdb as postgres"
    return None


class PrivateCluster:
    """``start`` once; then ``stop``, ``start`` and ``restart`` as a test needs. ``dsn`` names the
    ``postgres`` database on 127.0.0.1:``port`` with trust auth."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        assert bin_dir is not None, available()
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="pgc"))
        self.data = self.root / "data"
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is the server's own kill -9: no checkpoint, every client cut at once."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

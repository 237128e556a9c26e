"""A private Postfix instance in a temporary directory (root only): its own main.cf, master.cf, queue and
log, listening on 127.0.0.1:PORT. It either delivers a virtual domain into Maildirs (interop tests) or
relays everything to a relayhost (the benchmark's Postfix leg). The system's Postfix is never touched.
Recipe: ../shared/PEERS.md."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from inotify_simple import INotify, flags

from tests.peers.ports import free_port

__all__ = ["NOBODY", "Postfix", "available", "running"]

NOBODY = 65534
_MASTER_DIST = Path("/usr/share/postfix/master.cf.dist")


def available() -> str | None:
    """Why a private Postfix cannot run here, or None if it can."""
    if shutil.which("postfix") is None or not _MASTER_DIST.exists():
        return "Postfix is not installed (.ci/run installs it: apt-get install postfix)"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root"
    return None


class Postfix:
    def __init__(
        self,
        port: int,
        *,
        mailboxes: Iterable[str] = (),
        domain: str = "test.local",
        relayhost: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="pfx"))
        self.root.chmod(0o755)  # the virtual delivery agent runs as nobody
        self.mailboxes = list(mailboxes)
        self.domain = domain
        self.relayhost = relayhost
        self.settings = settings or {}

    def _main_cf(self) -> str:
        d = self.root
        cf = {
            "compatibility_level": "3.6",
            "queue_directory": f"{d}/queue",
            "data_directory": f"{d}/data",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "postfix.test",
            "mydomain": "test",
            "myorigin": "postfix.test",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtp_dns_support_level": "disabled",
            "alias_maps": "",
            "alias_database": "",
            "maillog_file_prefixes": str(d),
            "maillog_file": f"{d}/maillog",
        }
        if self.mailboxes:
            table = ", ".join(f"{m}@{self.domain}={m}/" for m in self.mailboxes)
            cf |= {
                "virtual_mailbox_domains": self.domain,
                "virtual_mailbox_base": f"{d}/mail",
                "virtual_mailbox_maps": f"inline:{{{table}}}",
                "virtual_uid_maps": f"static:{NOBODY}",
                "virtual_gid_maps": f"static:{NOBODY}",
            }
        if self.relayhost:
            cf["relayhost"] = self.relayhost
        cf |= self.settings
        return "".join(f"{k} = {v}\n" for k, v in cf.items())

    def _master_cf(self) -> str:
        lines = []
        for line in _MASTER_DIST.read_text().splitlines():
            fields = line.split()
            if line.startswith("smtp ") and len(fields) > 1 and fields[1] == "inet":
                lines.append(f"127.0.0.1:{self.port} inet n - n - - smtpd")
            elif fields and not line[0].isspace() and not line.startswith("#") and len(fields) >= 8:
                fields[4] = "n"  # no chroot: the instance lives in a temp dir
                lines.append(" ".join(fields))
            else:
                lines.append(line)
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        d = self.root
        for sub in ("queue", "data", "mail"):
            (d / sub).mkdir()
        shutil.chown(d / "data", "postfix")
        for box in self.mailboxes:
            for part in ("new", "cur", "tmp"):
                (d / "mail" / box / part).mkdir(parents=True)
        for path in [d / "mail", *(d / "mail").rglob("*")]:
            os.chown(path, NOBODY, NOBODY)
        (d / "main.cf").write_text(self._main_cf())
        (d / "master.cf").write_text(self._master_cf())
        # master -w (inside "postfix start") returns once the listeners are open
        done = subprocess.run(
            ["postfix", "-c", str(d), "start"], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"postfix start failed: {done.stderr}{self.log()}")

    def stop(self) -> None:
        subprocess.run(
            ["postfix", "-c", str(self.root), "abort"], capture_output=True, timeout=60, check=False
        )
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text() if path.exists() else ""

    def maildir(self, box: str) -> Path:
        return self.root / "mail" / box / "new"

    def wait_for_mail(self, box: str, count: int, timeout: float = 30.0) -> list[bytes]:
        """The first ``count`` messages delivered to ``box``, waiting on inotify for them to arrive."""
        new = self.maildir(box)
        deadline = time.monotonic() + timeout
        with INotify() as watch:
            watch.add_watch(str(new), flags.MOVED_TO | flags.CREATE)
            while len(files := sorted(new.iterdir())) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(files)} of {count} messages in {new}; log:\n{self.log()[-3000:]}"
                    )
                watch.read(timeout=int(left * 1000))
        return [f.read_bytes() for f in files]


def running(**options: Any) -> Iterator[Postfix]:
    """A started private Postfix for a fixture to yield (``Postfix``'s keyword options; a free port),
    stopped afterwards; the test is skipped where Postfix cannot run, or fails under
    SPOOLERD_REQUIRE_PEERS, as in CI."""
    reason = available()
    if reason is not None:
        if os.environ.get("SPOOLERD_REQUIRE_PEERS"):
            pytest.fail(reason)
        pytest.skip(reason)
    instance = Postfix(free_port(), **options)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()

"""A private Dovecot IMAP server in a temporary directory: its own dovecot.conf, users, Maildirs and log,
listening on 127.0.0.1 (plain IMAP and, with a certificate, implicit TLS). The system's Dovecot is never
touched. Recipe: ../shared/PEERS.md (mkdtemp + 0755 because auth and mail run as other users; anvil's
auth penalty off, so a test of a wrong password does not slow the next login)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["Dovecot", "available"]

NOBODY = 65534


def available() -> str | None:
    """Why a private Dovecot cannot run here, or None if it can."""
    if shutil.which("dovecot") is None:
        return "Dovecot is not installed (.ci/run installs it: apt-get install dovecot-imapd)"
    return None


class Dovecot:
    def __init__(
        self,
        imap_port: int,
        *,
        password: str,
        imaps_port: int | None = None,
        cert: tuple[Path, Path] | None = None,
    ) -> None:
        self.imap_port = imap_port
        self.imaps_port = imaps_port
        self.cert = cert
        self.password = password
        self.root = Path(tempfile.mkdtemp(prefix="dovecot"))
        self.root.chmod(0o755)
        self.process: subprocess.Popen[bytes] | None = None

    def _conf(self) -> str:
        d = self.root
        uid = os.geteuid()
        lines = [
            f"base_dir = {d}/run",
            f"state_dir = {d}/state",
            f"log_path = {d}/dovecot.log",
            f"info_log_path = {d}/dovecot.log",
            "protocols = imap",
            "listen = 127.0.0.1",
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login",
            "auth_failure_delay = 0",
            "first_valid_uid = 1",
            "mail_location = maildir:~/Maildir",
            "mail_fsync = never",
            "mailbox_idle_check_interval = 1 secs",
            "imap_idle_notify_interval = 1 mins",
            # every user name exists, with one password: a test takes a fresh account by naming it
            f"passdb {{\n  driver = static\n  args = password={self.password}\n}}",
            f"userdb {{\n  driver = static\n  args = uid={NOBODY} gid={NOBODY} home={d}/mail/%u\n}}",
            "service anvil {\n  chroot =\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}",
            "service imap-login {\n  chroot =\n  inet_listener imap {\n"
            f"    address = 127.0.0.1\n    port = {self.imap_port}\n  }}\n"
            + (
                f"  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {self.imaps_port}\n"
                "    ssl = yes\n  }\n"
                if self.imaps_port is not None
                else ""
            )
            + "}",
            "namespace inbox {\n  inbox = yes\n  separator = /\n"
            "  mailbox Sent {\n    special_use = \\Sent\n  }\n}",
        ]
        if self.cert is not None:
            lines += ["ssl = yes", f"ssl_cert = <{self.cert[0]}", f"ssl_key = <{self.cert[1]}"]
        else:
            lines.append("ssl = no")
        if uid != 0:
            import grp
            import pwd

            user = pwd.getpwuid(uid).pw_name
            group = grp.getgrgid(os.getegid()).gr_name
            lines += [
                f"default_internal_user = {user}",
                f"default_login_user = {user}",
                f"default_internal_group = {group}",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        d = self.root
        for sub in ("run", "state", "mail"):
            (d / sub).mkdir()
        if os.geteuid() == 0:
            os.chown(d / "mail", NOBODY, NOBODY)
        (d / "dovecot.conf").write_text(self._conf())
        self.process = subprocess.Popen(
            ["dovecot", "-F", "-c", str(d / "dovecot.conf")],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while True:  # a start-up wait for an external process, once per test session
            try:
                with socket.create_connection(("127.0.0.1", self.imap_port), timeout=1) as s:
                    if s.recv(64).startswith(b"* OK"):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                log = (d / "dovecot.log").read_text() if (d / "dovecot.log").exists() else ""
                self.stop()
                raise RuntimeError(f"Dovecot did not start: {err}\n{log}")
            time.sleep(0.03)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def maildir(self, user: str, mailbox: str = "INBOX") -> Path:
        base = self.root / "mail" / user / "Maildir"
        return base if mailbox == "INBOX" else base / f".{mailbox}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # a throwaway instance: no clean shutdown needed
            self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None
        shutil.rmtree(self.root, ignore_errors=True)

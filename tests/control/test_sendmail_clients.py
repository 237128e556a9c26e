"""Real programs that call sendmail(8) (bsd-mailx, mutt, git send-email) driving spoolerd-sendmail as
their sendmail, against a real daemon: what each passes is logged by a wrapper named ``sendmail``, and
what it piped in must arrive byte for byte in the local store's Inbox, for every recipient it named.

The programs come from Debian packages (.ci/run installs them); without them these tests skip, except
under SPOOLERD_REQUIRE_PEERS=1, where they fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.control.conftest import Daemon, running
from tests.control.test_tools import ctl, inbox, run

SENDMAIL = Path(sys.executable).parent / "spoolerd-sendmail"  # the console script users link


def need(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        reason = f"{program} is not installed (Debian package {package})"
        if os.environ.get("SPOOLERD_REQUIRE_PEERS"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


class LocalDaemon(Daemon):
    """The control tests' daemon, whose local store also owns @local.test (git send-email wants a dot
    in a domain) and whose "remote" transport logs every recipient it delivers."""

    def write_config(self) -> Path:
        cfg = super().write_config()
        text = cfg.read_text().replace(
            'addresses = ["@localhost"]', 'addresses = ["@localhost", "@local.test"]'
        )
        cfg.write_text(
            text.replace("[transports.remote]\n", f'[transports.remote]\nlog_file = "{self.remote_log}"\n')
        )
        return cfg

    @property
    def remote_log(self) -> Path:
        return self.root / "remote.log"


@pytest.fixture
async def daemon() -> AsyncIterator[LocalDaemon]:
    async for d in running(LocalDaemon):
        yield d


@dataclass
class Wrapper:
    """``DIR/sendmail``: logs its arguments and the message it is given, then runs spoolerd-sendmail."""

    path: Path
    env: dict[str, str]

    @classmethod
    def make(cls, daemon: Daemon, home: Path) -> Wrapper:
        path = home / "sendmail"
        path.write_text(
            "#!/bin/sh\n"
            f"printf '%s\\n' \"$@\" > '{home}/argv'\n"
            f"tee '{home}/stdin' | exec '{SENDMAIL}' \"$@\"\n"
        )
        path.chmod(0o755)
        env = {
            "HOME": str(home),
            "SPOOLERD_SOCKET": str(daemon.socket),
            "PATH": f"{home}:{os.environ['PATH']}",
        }
        return cls(path, env)

    @property
    def argv(self) -> list[str]:
        return (self.path.parent / "argv").read_text().splitlines()

    @property
    def message(self) -> bytes:
        return (self.path.parent / "stdin").read_bytes()


async def delivered(daemon: LocalDaemon) -> tuple[bytes, list[str]]:
    """After a flush: the one message in the Inbox, and the remote recipients logged for it."""
    await run(*ctl(daemon, "flush"), check=True)
    (copy,) = await inbox(daemon)
    content = (await run(*ctl(daemon, "cat", str(copy["id"])), check=True)).stdout
    remote = daemon.remote_log.read_text().split() if daemon.remote_log.exists() else []
    return content, sorted(remote[1::2])


def body(content: bytes) -> bytes:
    return content.split(b"\n\n", 1)[1]


async def test_bsd_mailx(daemon: LocalDaemon, tmp_path: Path) -> None:
    mail = need("bsd-mailx", "bsd-mailx")
    wrapper = Wrapper.make(daemon, tmp_path)
    (tmp_path / "mailrc").write_text(f"set sendmail={wrapper.path}\nset sendwait\n")  # sendwait: its status
    text = "café at nine\n.\nafter a lone dot\n".encode()
    env = {**wrapper.env, "MAILRC": str(tmp_path / "mailrc")}
    done = await run(mail, "-s", "mailx subject", "-c", "carol@remote.test", "alice@localhost",
                     "bob@remote.test", stdin=text, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert wrapper.argv == ["-i", "-t"]  # recipients from the header section
    content, remote = await delivered(daemon)
    assert content.endswith(wrapper.message)  # what mailx piped, after the From header sendmail adds
    assert body(content) == text
    assert b"\nSubject: mailx subject\n" in content
    assert remote == ["bob@remote.test", "carol@remote.test"]


async def test_mutt_with_its_default_flags_and_dsn(daemon: LocalDaemon, tmp_path: Path) -> None:
    mutt = need("mutt", "mutt")
    wrapper = Wrapper.make(daemon, tmp_path)
    # mutt's own default is "/usr/sbin/sendmail -oem -oi"; dsn_* make it pass -N and -R
    (tmp_path / "muttrc").write_text(
        f'set sendmail="{wrapper.path} -oem -oi"\nset dsn_notify="failure,success"\nset dsn_return=hdrs\n'
        'set from="dev@localhost"\nset use_from=yes\nset record=""\nset copy=no\nset hostname=localhost\n'
    )
    text = b"mutt body\n.\nmore\n"
    done = await run(mutt, "-n", "-F", str(tmp_path / "muttrc"), "-s", "mutt subject", "-c",
                     "carol@remote.test", "--", "alice@localhost", stdin=text, env=wrapper.env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert wrapper.argv == ["-oem", "-oi", "-N", "failure,success", "-R", "hdrs", "--", "alice@localhost",
                            "carol@remote.test"]  # fmt: skip
    await run(*ctl(daemon, "flush"), check=True)
    classes = sorted(str(m["class"]) for m in await inbox(daemon))
    # the message for alice, and the delivery report -N success asked for (to dev@localhost)
    assert classes == ["IPM.Note", "REPORT.IPM.Note.DR"]
    ids = {str(m["class"]): str(m["id"]) for m in await inbox(daemon)}
    content = (await run(*ctl(daemon, "cat", ids["IPM.Note"]), check=True)).stdout
    assert content == wrapper.message  # mutt writes Date, Message-ID and From itself: nothing to add
    assert body(content) == text and b"\nSubject: mutt subject\n" in content
    assert daemon.remote_log.read_text().split()[1::2] == ["carol@remote.test"]


@pytest.fixture
def git() -> str:
    git = need("git", "git")
    exec_path = subprocess.run([git, "--exec-path"], capture_output=True, check=True, text=True).stdout
    if not (Path(exec_path.strip()) / "git-send-email").exists():
        need("git-send-email", "git-email")  # not on PATH: skips, or fails under SPOOLERD_REQUIRE_PEERS
    return git


async def test_git_send_email(daemon: LocalDaemon, tmp_path: Path, git: str) -> None:
    wrapper = Wrapper.make(daemon, tmp_path)
    who = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@local.test",
           "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@local.test"}  # fmt: skip
    env = {**wrapper.env, **who, "GIT_CONFIG_NOSYSTEM": "1"}
    repo = tmp_path / "repo"
    await run(git, "init", "-q", str(repo), env=env, check=True)
    (repo / "notes.txt").write_text("a line\n.\nthe dot above stays\n")
    await run(git, "-C", str(repo), "add", "notes.txt", env=env, check=True)
    await run(
        git, "-C", str(repo), "commit", "-q", "-m", "Add notes", "-m", "Why: a test.", env=env, check=True
    )
    await run(
        git, "-C", str(repo), "format-patch", "-q", "-1", "-o", str(tmp_path / "out"), env=env, check=True
    )
    (patch,) = (tmp_path / "out").iterdir()
    done = await run(git, "-C", str(repo), "send-email", f"--sendmail-cmd={wrapper.path}", "--confirm=never",
                     "--from=Dev <dev@local.test>", "--envelope-sender=dev@local.test",
                     "--to=alice@local.test", "--cc=bob@remote.test", "--suppress-cc=all", "--quiet",
                     str(patch), env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert wrapper.argv == ["-f", "dev@local.test", "-i", "alice@local.test", "bob@remote.test"]
    content, remote = await delivered(daemon)
    assert content == wrapper.message
    assert b"\nSubject: [PATCH] Add notes\n" in content
    assert b"+a line\n+.\n+the dot above stays\n" in body(content)
    assert remote == ["bob@remote.test"]

"""spoolerd-sendmail as cron, PHP and operators call it, against a real daemon: the command lines they
use verbatim, -N and the reports it asks for, and the modes (mailq, -q, newaliases, -bv, refusals)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

from tests.control.conftest import Daemon
from tests.control.test_tools import ctl, inbox, run, sendmail

SENDMAIL = Path(sys.executable).parent / "spoolerd-sendmail"  # the console script users link

CRON_MAIL = (
    b"From: root@localhost (Cron Daemon)\nTo: root@localhost\nSubject: Cron <root@vm> run-parts /etc/cron\n"
    b"MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n"
    b"X-Cron-Env: <SHELL=/bin/sh>\nDate: Mon, 30 Nov 2026 14:00:01 +0000\nMessage-ID: <cron.1@vm>\n\n"
    b"caf\xc3\xa9 report\n.\nthe line after a lone dot\n"
)


async def contents(daemon: Daemon) -> dict[str, bytes]:
    """The Inbox after a flush: message class -> content (one message per class)."""
    await run(*ctl(daemon, "flush"), check=True)
    out = {}
    for row in await inbox(daemon):
        out[str(row["class"])] = (await run(*ctl(daemon, "cat", str(row["id"])), check=True)).stdout
    return out


async def test_debian_cron_command_line_verbatim(daemon: Daemon) -> None:
    argv, env = sendmail(daemon, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root@localhost")
    done = await run(*argv, stdin=CRON_MAIL, env=env)
    assert done.returncode == 0, done.stderr
    assert await contents(daemon) == {"IPM.Note": CRON_MAIL}  # byte for byte, the lone dot kept (-i)


@pytest.mark.parametrize("flags", [("-t", "-i"), ("-ti",), ("-i", "-t", "--")])
async def test_php_style_t_i(daemon: Daemon, flags: tuple[str, ...]) -> None:
    mail = (
        b"To: alice@localhost\nBcc: bob@localhost\nFrom: web@localhost\nSubject: php\n"
        b"Date: Mon, 30 Nov 2026 14:00:01 +0000\nMessage-ID: <php.1@vm>\n\nbody\n.\nend\n"
    )
    argv, env = sendmail(daemon, *flags)
    done = await run(*argv, stdin=mail, env=env)
    assert done.returncode == 0, done.stderr
    assert await contents(daemon) == {"IPM.Note": mail.replace(b"Bcc: bob@localhost\n", b"")}


async def test_n_never_files_no_ndr_and_the_default_does(daemon: Daemon) -> None:
    for subject, flags in ((b"quiet", ("-N", "never")), (b"loud", ())):
        argv, env = sendmail(daemon, "-f", "me@localhost", *flags, "nobody@remote.test")
        await run(*argv, stdin=b"Subject: " + subject + b"\n\nx\n", env=env, check=True)
    reports = await contents(daemon)
    assert list(reports) == ["REPORT.IPM.Note.NDR"]  # one report: for the message without -N never
    assert b"Subject: loud" in reports["REPORT.IPM.Note.NDR"]
    assert b"Subject: quiet" not in reports["REPORT.IPM.Note.NDR"]


async def test_n_success_files_a_delivery_report(daemon: Daemon) -> None:
    argv, env = sendmail(daemon, "-N", "success,failure", "-f", "me@localhost", "ok@remote.test")
    await run(*argv, stdin=b"Subject: track me\n\nx\n", env=env, check=True)
    reports = await contents(daemon)
    assert list(reports) == ["REPORT.IPM.Note.DR"]
    assert b"ok@remote.test" in reports["REPORT.IPM.Note.DR"]


async def test_mailq_and_newaliases_by_argv0(daemon: Daemon, tmp_path: Path) -> None:
    for name in ("mailq", "newaliases"):
        (tmp_path / name).symlink_to(SENDMAIL)
    env = {"SPOOLERD_SOCKET": str(daemon.socket)}
    await run(*ctl(daemon, "offline", "remote"), check=True)
    argv, _ = sendmail(daemon, "waiting@remote.test")
    await run(*argv, stdin=b"Subject: w\n\nx\n", env=env, check=True)
    (queued,) = json.loads((await run(*ctl(daemon, "--json", "queue"), check=True)).stdout)
    for listing in (await run(str(tmp_path / "mailq"), env=env), await run(str(SENDMAIL), "-bp", env=env)):
        assert listing.returncode == 0, listing.stderr  # spoolerctl queue's listing (not its format)
        assert queued["id"].encode() in listing.stdout and b"waiting@remote.test" in listing.stdout
    aliases = await run(str(tmp_path / "newaliases"), env=env)
    assert (
        aliases.returncode == 0 and b"[aliases]" in aliases.stderr and b"spoolerctl reload" in aliases.stderr
    )


async def test_q_flushes_like_spoolerctl_flush(daemon: Daemon) -> None:
    (daemon.drop / "in.eml").write_bytes(b"From: far@remote.test\nSubject: fetched\n\nbody\n")
    argv, env = sendmail(daemon, "-q")
    done = await run(*argv, env=env)
    assert (done.returncode, done.stdout) == (0, b""), done.stderr  # silent, as postqueue -f
    assert [m["subject"] for m in await inbox(daemon)] == ["fetched"]  # a download is part of a flush
    (daemon.drop / "again.eml").write_bytes(b"From: far@remote.test\nSubject: again\n\nbody\n")
    argv, env = sendmail(daemon, "-v", "-q")
    done = await run(*argv, env=env)
    assert done.stdout == b"sent=0 deferred=0 failed=0 received=1\n"  # -v: spoolerctl flush's answer


async def test_qi_and_qr_flush_the_messages_they_name(daemon: Daemon) -> None:
    await run(*ctl(daemon, "offline", "remote"), check=True)
    for rcpt in ("a@remote.test", "b@other.test"):
        argv, env = sendmail(daemon, rcpt)
        await run(*argv, stdin=b"Subject: q\n\nx\n", env=env, check=True)
    queued = json.loads((await run(*ctl(daemon, "--json", "queue"), check=True)).stdout)
    first = next(r["id"] for r in queued if r["recipients"][0]["address"] == "a@remote.test")
    # a flush tries what it names now (postqueue -f): each waits, and the answer says why
    for flag, named in ((f"-qI{first}", 1), ("-qRother.test", 1), ("-qRtest", 2), ("-q1h", 2)):
        argv, env = sendmail(daemon, "-v", flag)
        done = await run(*argv, env=env)
        counts, *why = done.stdout.decode().splitlines()
        assert (done.returncode, counts) == (0, f"sent=0 deferred={named} failed=0 received=0"), flag
        assert len(why) == named and all(line.endswith("transport remote is offline") for line in why)
    argv, env = sendmail(daemon, "-qRnowhere.test")
    done = await run(*argv, env=env)
    assert (done.returncode, done.stdout) == (0, b"")
    assert b"nothing queued for nowhere.test" in done.stderr


async def test_bv_asks_spoolerctl_verify(daemon: Daemon) -> None:
    argv, env = sendmail(daemon, "-bv", "root@localhost")
    done = await run(*argv, env=env)
    assert done.returncode == 0 and b"root@localhost" in done.stdout, done.stderr


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("--help",), 0, b""),
        (("-Z", "a@localhost"), 64, b"unknown option -Z"),
        (("-tZ",), 64, b"unknown option -Z (in -tZ)"),
        (("-bd",), 64, b"spoolerd run"),
        (("-N", "sometimes", "a@localhost"), 64, b"-N 'sometimes'"),
    ],
)
async def test_help_and_refusals_name_their_reason(
    tmp_path: Path, args: tuple[str, ...], code: int, says: bytes
) -> None:
    # decided before any daemon is asked: none runs here
    argv, env = sendmail(Daemon(tmp_path), *args)
    done = await run(*argv, env=env)
    assert done.returncode == code and says in done.stderr, done.stderr
    if code == 0:
        assert done.stdout.startswith(b"usage: spoolerd-sendmail")


async def test_spoolerctl_version() -> None:
    done = await run(sys.executable, "-m", "spoolerd.ctl", "--version", check=True)
    assert done.stdout.startswith(b"spoolerctl 0.")


async def test_c_config_and_n_on_the_direct_path() -> None:
    """With no daemon, -C names the config whose store takes the message, and -N still applies."""
    root = Path(tempfile.mkdtemp(prefix="spd"))
    os.chmod(root, 0o755)
    down = Daemon(root)
    cfg = down.write_config()
    env = {"SPOOLERD_SOCKET": str(down.socket), "SPOOLERD_CONFIG": ""}
    for flags in (("-N", "never", "nobody@remote.test"), ("-Nsuccess", "ok@remote.test")):
        argv, _ = sendmail(down, "-C", str(cfg), "-f", "me@localhost", *flags)
        done = await run(*argv, stdin=b"Subject: direct\n\nx\n", env=env)
        assert done.returncode == 0, done.stderr
    await down.start()
    try:
        await run(*ctl(down, "flush"), check=True)
        assert [m["class"] for m in await inbox(down)] == ["REPORT.IPM.Note.DR"]  # and no NDR
    finally:
        assert await down.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid (setpriv) needs root")
async def test_no_daemon_and_a_config_this_user_may_not_read_is_a_temporary_failure() -> None:
    """The systemd layout (config 0640, the daemon stopped for a restart): a user who may only submit
    through the daemon is told to wait (75, EX_TEMPFAIL), not that the configuration is broken (78)."""
    root = Path(tempfile.mkdtemp(prefix="spd"))
    os.chmod(root, 0o755)
    down = Daemon(root)
    cfg = down.write_config()
    os.chmod(cfg, 0o640)
    argv, _ = sendmail(down, "-f", "me@localhost", "bob@localhost")
    env = {"SPOOLERD_SOCKET": str(down.socket), "SPOOLERD_CONFIG": str(cfg)}
    as_other = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    done = await run(*as_other, stdin=b"Subject: x\n\nx\n", env=env)
    assert done.returncode == 75, done.stderr
    assert f"may not read {cfg}".encode() in done.stderr and b"no spoolerd answers" in done.stderr

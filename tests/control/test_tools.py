"""spoolerctl and spoolerd-sendmail, run as the commands a user types, against a real daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from tests.control.conftest import Daemon

MAIL = (
    b"From: me@localhost\nTo: alice@localhost\nCc: bob@localhost\nBcc: secret@localhost\nSubject: cron\n\n"
    b"line\n.\nafter the dot\n"
)


async def run(
    *argv: str, stdin: bytes = b"", env: dict[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess[bytes]:
    return await anyio.run_process(list(argv), input=stdin, env={**os.environ, **(env or {})}, check=check)


def ctl(daemon: Daemon, *args: str) -> list[str]:
    return [sys.executable, "-m", "spoolerd.ctl", "--socket", str(daemon.socket), *args]


def sendmail(daemon: Daemon, *args: str) -> tuple[list[str], dict[str, str]]:
    return [sys.executable, "-m", "spoolerd.sendmail", *args], {"SPOOLERD_SOCKET": str(daemon.socket)}


async def inbox(daemon: Daemon) -> list[dict[str, object]]:
    out = await run(*ctl(daemon, "--json", "ls", "inbox"), check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


async def test_sendmail_t_i_with_the_daemon_up(daemon: Daemon) -> None:
    argv, env = sendmail(daemon, "-t", "-i")
    done = await run(*argv, stdin=MAIL, env=env)
    assert done.returncode == 0, done.stderr
    flushed = json.loads((await run(*ctl(daemon, "--json", "flush"), check=True)).stdout)
    assert flushed["failed"] == 0
    (copy,) = await inbox(daemon)
    content = (await run(*ctl(daemon, "cat", str(copy["id"])), check=True)).stdout
    assert b"after the dot" in content  # -i: a lone dot does not end the message
    assert b"Bcc" not in content
    sent = json.loads((await run(*ctl(daemon, "--json", "ls", "sent"), check=True)).stdout)
    assert len(sent) == 1


async def test_sendmail_dot_ends_input_and_f_F_make_a_from(daemon: Daemon) -> None:
    argv, env = sendmail(daemon, "-f", "robot@localhost", "-F", "Cron Daemon", "alice@localhost")
    assert (await run(*argv, stdin=b"Subject: x\n\nbefore\n.\nafter\n", env=env)).returncode == 0
    await run(*ctl(daemon, "flush"), check=True)
    (copy,) = await inbox(daemon)
    content = (await run(*ctl(daemon, "cat", str(copy["id"])), check=True)).stdout
    assert b'From: "Cron Daemon" <robot@localhost>' in content
    assert b"before" in content and b"after" not in content


async def test_sendmail_address_with_a_line_break_exits_65(daemon: Daemon) -> None:
    """A control character in an address argument is bad data, as in a To: field read with -t."""
    argv, env = sendmail(daemon, "bad\naddress@localhost")
    done = await run(*argv, stdin=b"x", env=env)
    assert done.returncode == 65, done.stderr
    assert b"contains control characters" in done.stderr


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        ((), b"Subject: none\n\nx\n"),  # no recipients at all
        (("-Q", "a@localhost"), b"x"),  # unknown option
        (("-q", "a@localhost"), b"x"),  # a flush takes no recipients
        (("-bz",), b""),  # a mode sendmail does not have
        (("-f",), b""),  # missing argument
    ],
)
async def test_sendmail_usage_errors_exit_64(daemon: Daemon, args: tuple[str, ...], stdin: bytes) -> None:
    argv, env = sendmail(daemon, *args)
    done = await run(*argv, stdin=stdin, env=env)
    assert done.returncode == 64, done.stderr
    assert done.stderr.startswith(b"spoolerd-sendmail: ")


async def test_sendmail_with_the_daemon_down_queues_into_the_store(tmp_path: Path) -> None:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="spd"))
    os.chmod(root, 0o755)
    down = Daemon(root)
    cfg = down.write_config()
    argv, env = sendmail(down, "alice@localhost")
    done = await run(
        *argv, stdin=b"Subject: waits\n\nfor the daemon\n", env={**env, "SPOOLERD_CONFIG": str(cfg)}
    )
    assert done.returncode == 0, done.stderr
    await down.start()
    try:
        with anyio.fail_after(20):
            while not await inbox(down):
                await run(*ctl(down, "flush"), check=True)
    finally:
        assert await down.stop() == 0


async def test_spoolerctl_commands_and_exit_codes(daemon: Daemon, tmp_path: Path) -> None:
    status = await run(*ctl(daemon, "status"), check=True)
    assert b"spooler" in status.stdout and b"loopback" in status.stdout
    mail = tmp_path / "mail.eml"
    mail.write_bytes(b"From: me@localhost\nTo: x@remote.test\nSubject: later\n\nbody\n")
    await run(*ctl(daemon, "offline", "remote"), check=True)
    submitted = json.loads((await run(*ctl(daemon, "--json", "submit", str(mail)), check=True)).stdout)
    await run(*ctl(daemon, "flush", "--upload", "--force"), check=True)
    queue = (await run(*ctl(daemon, "queue"), check=True)).stdout.decode()
    assert submitted["id"] in queue and "x@remote.test" in queue
    await run(*ctl(daemon, "online", "remote"), check=True)
    counts = json.loads(
        (await run(*ctl(daemon, "--json", "flush", "--transport", "remote", "--force"), check=True)).stdout
    )
    assert counts["sent"] == 1
    assert (await run(*ctl(daemon, "queue"), check=True)).stdout.startswith(b"Mail queue is empty")
    refused = await run(*ctl(daemon, "abort", submitted["id"]))
    assert refused.returncode == 1 and b"not_in_queue" in refused.stderr
    assert (await run(*ctl(daemon, "frobnicate"))).returncode == 2
    unreachable = await run(
        sys.executable, "-m", "spoolerd.ctl", "--socket", str(tmp_path / "none.sock"), "status"
    )
    assert unreachable.returncode == 3


async def test_spoolerctl_watch_prints_events(daemon: Daemon) -> None:
    proc = subprocess.Popen(ctl(daemon, "--json", "watch"), stdout=subprocess.PIPE)  # noqa: ASYNC220
    try:
        assert proc.stdout is not None
        first = await anyio.to_thread.run_sync(proc.stdout.readline)
        assert json.loads(first)["type"] == "subscribed"
        argv, env = sendmail(daemon, "alice@localhost")
        await run(*argv, stdin=b"Subject: w\n\nx\n", env=env, check=True)
        with anyio.fail_after(20):
            event = json.loads(await anyio.to_thread.run_sync(proc.stdout.readline))
        assert event["type"] in ("queue_changed", "new_mail")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_hold_and_release(daemon: Daemon, tmp_path: Path) -> None:
    mail = tmp_path / "later.eml"
    mail.write_bytes(b"To: far@remote.test\nSubject: held\n\nx\n")
    await run(*ctl(daemon, "offline", "remote"), check=True)  # it waits in the queue ...
    mid = json.loads((await run(*ctl(daemon, "--json", "submit", str(mail)), check=True)).stdout)["id"]
    assert (await run(*ctl(daemon, "hold", mid), check=True)).stdout.strip() == f"{mid} held".encode()
    await run(*ctl(daemon, "online", "remote"), check=True)  # ... and the hold keeps it there
    (row,) = json.loads((await run(*ctl(daemon, "--json", "queue"), check=True)).stdout)
    assert row["held"] is True
    assert b"! = held" in (await run(*ctl(daemon, "queue"), check=True)).stdout
    counts = json.loads((await run(*ctl(daemon, "--json", "flush", "--force"), check=True)).stdout)
    assert counts["sent"] == 0
    await run(*ctl(daemon, "release", mid), check=True)
    counts = json.loads((await run(*ctl(daemon, "--json", "flush", "--force"), check=True)).stdout)
    assert counts["sent"] == 1
    assert (await run(*ctl(daemon, "queue"), check=True)).stdout.startswith(b"Mail queue is empty")


async def test_reload_applies_a_good_config_and_refuses_a_bad_one(daemon: Daemon) -> None:
    import signal

    cfg = daemon.root / "spoolerd.toml"
    # the list sends to an address the remote peer rejects: an NDR proves the reload took effect
    good = cfg.read_text() + '\n[lists]\n"team@localhost" = ["nobody@remote.test"]\n'
    cfg.write_text(good)
    answer = json.loads((await run(*ctl(daemon, "--json", "reload"), check=True)).stdout)
    assert answer == {
        "reloaded": True,
        "applied": ["lists.team@localhost"],
        "restart_needed": [],
        "not_applied": [],
    }
    argv, env = sendmail(daemon, "team@localhost")
    await run(*argv, stdin=b"Subject: team\n\nx\n", env=env, check=True)
    await run(*ctl(daemon, "flush"), check=True)
    assert [m["class"] for m in await inbox(daemon)] == ["REPORT.IPM.Note.NDR"]

    cfg.write_text(good + "\n[spooler.retry]\ninitial = -5\n")  # bad: refused, the old config stays
    refused = await run(*ctl(daemon, "reload"))
    assert (
        refused.returncode == 1
        and b"bad_config" in refused.stderr
        and b"spooler.retry.initial" in refused.stderr
    )
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)  # the same through SIGHUP: logged, and the daemon lives on
    assert (await run(*ctl(daemon, "status"))).returncode == 0

    cfg.write_text(good.replace("[transports.remote]", "[transports.remote2]"))  # applied live
    answer = json.loads((await run(*ctl(daemon, "--json", "reload"), check=True)).stdout)
    assert answer == {
        "reloaded": True,
        "applied": ["transports.remote2 added", "transports.remote removed"],
        "restart_needed": [],
        "not_applied": [],
    }


async def test_status_rows_and_events_follow_the_state(daemon: Daemon) -> None:
    watch = await daemon.client()
    await watch.stream.send(b'{"id": "w", "cmd": "subscribe"}\n')
    with anyio.fail_after(10):
        assert (await watch.line())["event"]["type"] == "subscribed"
    await run(*ctl(daemon, "offline", "remote"), check=True)
    argv, env = sendmail(daemon, "ok@remote.test", "nobody@remote.test")
    await run(*argv, stdin=b"Subject: s\n\nx\n", env=env, check=True)
    await run(*ctl(daemon, "online", "remote"), check=True)
    await run(*ctl(daemon, "flush", "--force"), check=True)
    rows = {
        r["name"]: r for r in json.loads((await run(*ctl(daemon, "--json", "status"), check=True)).stdout)
    }
    remote = rows["remote"]
    assert remote["counters"] == {"sent": 1, "deferred": 0, "failed": 1}
    assert "no such user" in remote["last_error"] and remote["since"] is not None
    assert rows["spooler"]["counters"]["sent"] >= 1
    types = []
    with anyio.fail_after(10):
        while not {"status_changed", "delivered", "failed"} <= set(types):
            types.append((await watch.line())["event"]["type"])
    assert types.index("status_changed") < types.index("delivered")


async def test_sigterm_with_deliveries_in_flight_loses_nothing(tmp_path: Path) -> None:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="spd"))
    os.chmod(root, 0o755)
    log_file = root / "peer.log"
    slow = Daemon(root, extra=f'delay = 0.3\nlog_file = "{log_file}"\n')
    await slow.start()
    argv, env = sendmail(slow, "-t")
    for n in range(20):
        await run(*argv, stdin=f"To: r{n}@remote.test\nSubject: {n}\n\nx\n".encode(), env=env, check=True)
    watch = await slow.client()
    await watch.stream.send(b'{"id": "w", "cmd": "subscribe"}\n')
    with anyio.fail_after(20):  # deliveries are under way: wait for the first one to be recorded
        while (await watch.line())["event"]["type"] != "delivered":
            pass
    await watch.stream.aclose()
    slow.clients.remove(watch)
    assert await slow.stop() == 0  # SIGTERM: in-flight sends finish, the rest stays queued
    done_before = set(log_file.read_text().split("\n")) - {""}
    await slow.start()
    try:
        with anyio.fail_after(60):
            while json.loads((await run(*ctl(slow, "--json", "queue"), check=True)).stdout):
                await run(*ctl(slow, "flush"), check=True)
    finally:
        assert await slow.stop() == 0
    lines = [line for line in log_file.read_text().split("\n") if line]
    assert sorted({line.split()[1] for line in lines}) == sorted(f"r{n}@remote.test" for n in range(20))
    assert len(lines) == len(set(lines))  # a graceful stop resends nothing
    assert done_before <= set(lines)


async def test_flush_download_counts_what_was_received(daemon: Daemon) -> None:
    for n in range(3):
        (daemon.drop / f"{n}.eml").write_bytes(
            f"From: far@remote.test\nSubject: in {n}\n\nbody {n}\n".encode()
        )
    counts = json.loads((await run(*ctl(daemon, "--json", "flush", "--download"), check=True)).stdout)
    assert counts == {"sent": 0, "deferred": 0, "failed": 0, "received": 3}
    assert list(daemon.drop.iterdir()) == []  # acknowledged (removed) only after the local commit
    assert sorted(m["subject"] for m in await inbox(daemon)) == ["in 0", "in 1", "in 2"]
    rows = {
        r["name"]: r for r in json.loads((await run(*ctl(daemon, "--json", "status"), check=True)).stdout)
    }
    assert "flush" in rows["feed"]["methods"] and "inbound_enabled" in rows["feed"]["status"]
    assert rows["spooler"]["counters"]["received"] == 3


async def test_more_error_codes(daemon: Daemon) -> None:
    c = await daemon.client()
    no_rcpt = await c.call("submit", message="U3ViamVjdDogbm9ib2R5Cgp4Cg==")  # "Subject: nobody\n\nx\n"
    assert no_rcpt["error"]["code"] == "no_recipients"
    burst = b"".join(b'{"id": %d, "cmd": "ping"}\n' % n for n in range(600))  # over the 400 burst at once
    await c.stream.send(burst)
    codes = []
    with anyio.fail_after(30):
        for _ in range(600):
            answer = await c.line()
            codes.append(answer.get("error", {}).get("code", "ok"))
    assert codes.count("rate_limited") > 0 and codes.count("ok") >= 400
    await anyio.sleep(0.1)  # the bucket refills with time (200 a second): time is the point here
    assert (await c.ok("ping"))["pong"]  # the connection survives its throttling

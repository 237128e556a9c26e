"""message_size_limit (#12 part 4): one limit on every submission path, and messages of any size under it
carried by the control socket. A real daemon, the real sendmail and spoolerctl commands."""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from spoolerd.client import ControlClient
from tests.control.conftest import Daemon, serving, short_root
from tests.control.test_tools import ctl, inbox, run, sendmail

pytestmark = pytest.mark.timeout(300)

MB = 1024 * 1024


def big_message(size: int, seed: int = 1) -> bytes:
    """Exactly ``size`` bytes: a complete header (nothing for sendmail or a preprocessor to add) and a
    base64 body, like an attachment."""
    head = (
        b"From: me@localhost\nTo: alice@localhost\nDate: Mon, 30 Nov 2026 12:00:00 +0000\n"
        b"Message-ID: <big.%d@localhost>\nSubject: big\n\n" % seed
    )
    body = base64.encodebytes(random.Random(seed).randbytes(size))[: size - len(head) - 1] + b"\n"
    return head + body


class Limited(Daemon):
    """A daemon with its own message_size_limit."""

    def __init__(self, root: Path, limit: int) -> None:
        super().__init__(root)
        self.limit = limit

    def write_config(self) -> Path:
        cfg = super().write_config()
        text = cfg.read_text().replace("[spooler]\n", f"[spooler]\nmessage_size_limit = {self.limit}\n", 1)
        cfg.write_text(text)
        return cfg


@pytest.fixture
async def limited() -> AsyncIterator[Limited]:
    async with serving(Limited(short_root(), 100_000)) as d:
        yield d


async def _delivered_copy(daemon: Daemon) -> bytes:
    await run(*ctl(daemon, "flush"), check=True)
    (copy,) = await inbox(daemon)
    return (await run(*ctl(daemon, "cat", str(copy["id"])), check=True)).stdout


async def test_a_20_mb_message_lands_byte_exact_with_the_daemon_running(daemon: Daemon) -> None:
    mail = big_message(20 * MB)
    argv, env = sendmail(daemon, "-i", "alice@localhost")
    done = await run(*argv, stdin=mail, env=env)
    assert done.returncode == 0, done.stderr
    assert await _delivered_copy(daemon) == mail


async def test_a_20_mb_message_lands_byte_exact_with_the_daemon_stopped() -> None:
    down = Daemon(short_root())
    argv, env = sendmail(down, "-i", "alice@localhost")
    mail = big_message(20 * MB, seed=2)
    done = await run(*argv, stdin=mail, env={**env, "SPOOLERD_CONFIG": str(down.write_config())})
    assert done.returncode == 0, done.stderr
    await down.start()
    try:
        assert await _delivered_copy(down) == mail
    finally:
        assert await down.stop() == 0


async def test_over_the_limit_is_refused_on_the_socket_with_a_stable_code(limited: Limited) -> None:
    c = await limited.client()
    over = big_message(100_001)
    head = json.dumps({"id": 1, "cmd": "submit", "args": {"recipients": ["alice@localhost"]},
                       "body": len(over)}).encode()  # fmt: skip
    answer = await c.raw(head + b"\n" + over)
    assert answer["id"] == 1 and answer["error"]["code"] == "message_too_large"
    assert "100001 bytes is over the message_size_limit of 100000 bytes" in answer["error"]["message"]
    as_base64 = await c.call("submit", message=base64.b64encode(over).decode())
    assert as_base64["error"]["code"] == "message_too_large"
    assert "message_size_limit of 100000 bytes" in as_base64["error"]["message"]
    assert (await c.ok("ping"))["pong"]  # the refused body was read past: the connection goes on
    assert await c.ok("queue") == []
    at_limit = big_message(100_000)  # the limit itself is allowed
    await c.stream.send(head.replace(b"100001", b"100000") + b"\n" + at_limit)
    with anyio.fail_after(30):
        assert (await c.line())["ok"] is True
    refused = await run(*ctl(limited, "submit", "--to", "alice@localhost", "/dev/stdin"), stdin=over)
    assert refused.returncode == 1 and b"message_too_large" in refused.stderr
    limited.limit = 50_000  # a reload applies a new limit at once, to new connections too
    limited.write_config()
    await run(*ctl(limited, "reload"), check=True)
    again = await run(*ctl(limited, "submit", "--to", "alice@localhost", "/dev/stdin"), stdin=at_limit)
    assert again.returncode == 1 and b"message_size_limit of 50000 bytes" in again.stderr


async def test_sendmail_over_the_limit_exits_69_with_the_daemon_running_or_stopped(limited: Limited) -> None:
    argv, env = sendmail(limited, "-i", "alice@localhost")
    over = big_message(100_001)
    up = await run(*argv, stdin=over, env=env)
    assert up.returncode == 69, up.stderr  # EX_UNAVAILABLE, as Postfix's sendmail: never 75
    assert b"message_size_limit of 100000 bytes" in up.stderr
    assert await limited.stop() == 0
    cfg = str(limited.root / "spoolerd.toml")
    down = await run(*argv, stdin=over, env={**env, "SPOOLERD_CONFIG": cfg})
    assert down.returncode == 69, down.stderr
    assert b"message_size_limit of 100000 bytes" in down.stderr
    fits = await run(*argv, stdin=big_message(100_000), env={**env, "SPOOLERD_CONFIG": cfg})
    assert fits.returncode == 0, fits.stderr
    await limited.start()
    queued = json.loads((await run(*ctl(limited, "--json", "queue"), check=True)).stdout)
    assert [row["size"] for row in queued] in ([100_000], [])  # only the one that fits (or sent already)
    assert await _delivered_copy(limited) == big_message(100_000)


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


async def test_a_50_mb_submission_costs_the_daemon_about_twice_its_size() -> None:
    size = 50 * MB
    d = Limited(short_root(), 64 * MB)
    await d.start()
    try:
        assert d.proc is not None
        pid = d.proc.pid
        with open(f"/proc/{pid}/clear_refs", "w") as fh:  # noqa: ASYNC230 (procfs: no waiting)
            fh.write("5")  # the peak (VmHWM) starts again from now
        before = _status(pid, "VmRSS")
        mail = big_message(size)

        def submit() -> dict[str, object]:
            with ControlClient(d.socket) as client:  # not_before: the spooler leaves it alone meanwhile
                result: dict[str, object] = client.submit(
                    mail, recipients=["alice@localhost"], not_before=time.time() + 3600
                )
                return result

        result = await anyio.to_thread.run_sync(submit)
        growth = _status(pid, "VmHWM") - before
        print(f"daemon peak RSS growth for a {size} byte submission: {growth} bytes ({growth / size:.2f}x)")
        assert growth <= 2.2 * size  # measured: 2.03x
        queued = json.loads((await run(*ctl(d, "--json", "queue"), check=True)).stdout)
        assert [(row["id"], row["size"]) for row in queued] == [(result["id"], size)]
    finally:
        assert await d.stop() == 0

"""The control socket, black-box: a real daemon process driven only through its socket."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import anyio
import pytest

from tests.control.conftest import Daemon, serving, short_root

MESSAGE = (
    b"From: me@localhost\r\nTo: Alice <alice@localhost>\r\n"
    b"Bcc: hidden@localhost\r\nSubject: hi\r\n\r\nbody\r\n"
)


async def test_ping_status_and_socket_mode(daemon: Daemon) -> None:
    assert oct(daemon.socket.stat().st_mode & 0o777) == "0o660"
    c = await daemon.client()
    assert (await c.ok("ping"))["pong"] is True
    rows = await c.ok("status")
    assert [(r["resource_type"], r["name"]) for r in rows] == [
        ("spooler", "spooler"), ("store", "local"), ("transport", "loopback"), ("transport", "remote"),
        ("transport", "feed"),
    ]  # fmt: skip
    assert "available" in rows[2]["status"]


async def test_submit_queue_flush_list_fetch(daemon: Daemon) -> None:
    c = await daemon.client()
    sub = await c.ok("submit", message=base64.b64encode(MESSAGE).decode())
    assert sub["recipients"] == 2 and sub["store"] == "local"
    result = await c.ok("flush", direction="upload")
    assert set(result) == {"sent", "deferred", "failed", "received", "deferrals"}
    assert await c.ok("queue") == []
    inbox = await c.ok("list", folder="inbox")
    assert len(inbox) == 1 and inbox[0]["class"] == "IPM.Note"
    copy = base64.b64decode((await c.ok("fetch", id=inbox[0]["id"]))["content"])
    assert b"Bcc:" not in copy and b"Subject: hi" in copy  # Bcc recipients get it, nobody sees them
    sent = await c.ok("list", folder="sent")
    assert [m["id"] for m in sent] == [sub["id"]]


async def test_flush_counts_and_ndr(daemon: Daemon) -> None:
    c = await daemon.client()
    await c.ok("offline", transport="remote")
    msg = b"From: me@localhost\r\nTo: ok@remote.test, nobody@remote.test\r\nSubject: x\r\n\r\nx\r\n"
    sub = await c.ok("submit", message=base64.b64encode(msg).decode())
    assert (await c.ok("flush", direction="upload", force=True))["sent"] == 0  # remote is offline
    (row,) = await c.ok("queue")
    assert row["id"] == sub["id"] and {r["state"] for r in row["recipients"]} == {"pending"}
    await c.ok("online", transport="remote")
    counts = await c.ok("flush", direction="upload", transport="remote", force=True)
    assert (counts["sent"], counts["failed"]) == (1, 1)
    (ndr,) = await c.ok("list", folder="inbox")
    assert ndr["class"] == "REPORT.IPM.Note.NDR"


async def test_abort(daemon: Daemon) -> None:
    c = await daemon.client()
    msg = base64.b64encode(b"To: alice@localhost\r\n\r\nlater\r\n").decode()
    sub = await c.ok("submit", message=msg, not_before=4_000_000_000.0)
    assert (await c.ok("abort", id=sub["id"]))["aborted"]
    again = await c.call("abort", id=sub["id"])
    assert again["error"]["code"] == "not_in_queue"


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"this is not json\n", "bad_json"),
        (b"\xff\xfe\x00garbage\x80\n", "bad_json"),
        (b"[1, 2, 3]\n", "bad_request"),
        (b'{"id": 1}\n', "bad_request"),
        (b'{"id": 1, "cmd": "launch"}\n', "unknown_command"),
        (b'{"id": 1, "cmd": "flush", "args": {"force": "yes"}}\n', "bad_args"),
        (b'{"id": 1, "cmd": "flush", "args": {"colour": 1}}\n', "bad_args"),
        (b'{"id": 1, "cmd": "flush", "args": {"transport": "smpt"}}\n', "unknown_transport"),
        (b'{"id": 1, "cmd": "submit", "args": {"message": "!!"}}\n', "bad_args"),
        (b'{"id": 1, "cmd": "ping", "body": 3}\n{}\n', "bad_request"),  # only submit takes a body
        (b'{"id": 1, "cmd": "submit", "args": {"message": "eA=="}, "body": 2}\nxx', "bad_args"),
        (b'{"id": 1, "cmd": "submit", "body": "many"}\n', "bad_request"),
        (b'{"id": 1, "cmd": "fetch", "args": {"id": "999"}}\n', "not_found"),
        (b'{"id": 1, "cmd": "list", "args": {"store": "nope"}}\n', "unknown_store"),
    ],
)
async def test_bad_requests_get_errors_and_the_daemon_lives_on(
    daemon: Daemon, line: bytes, code: str
) -> None:
    c = await daemon.client()
    answer = await c.raw(line)
    assert answer["ok"] is False and answer["error"]["code"] == code, answer
    assert (await c.ok("ping"))["pong"]  # same connection still works


async def test_huge_lines(daemon: Daemon) -> None:
    c = await daemon.client()
    garbage = await c.raw(b"x" * (1000 * 1024) + b"\n")  # under the 1 MiB line limit: a parse error
    assert garbage["error"]["code"] == "bad_json"
    too_long = await c.raw(b"y" * (20 * 1024 * 1024) + b"\n")
    assert too_long["error"]["code"] == "line_too_long"
    assert (await c.ok("ping"))["pong"]


async def test_subscribe_streams_events(daemon: Daemon) -> None:
    watcher = await daemon.client()
    await watcher.stream.send(b'{"id": "w", "cmd": "subscribe"}\n')
    with anyio.fail_after(10):
        assert (await watcher.line())["event"]["type"] == "subscribed"
    c = await daemon.client()
    sub = await c.ok("submit", message=base64.b64encode(b"To: bob@localhost\r\n\r\nx\r\n").decode())
    seen = set()
    with anyio.fail_after(10):
        while ("queue_changed", "submit") not in seen or "new_mail" not in {k for k, _ in seen}:
            event = (await watcher.line())["event"]
            seen.add((event["type"], event.get("reason")))
            if event["type"] == "queue_changed":
                assert event["id"] in (sub["id"], None)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid (setpriv) needs root")
async def test_a_uid_that_is_not_allowed_is_refused(daemon: Daemon) -> None:
    os.chmod(daemon.socket, 0o666)  # let the other user reach the socket: the peer check must stop it
    code = (
        "import socket, contextlib\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"s.connect({str(daemon.socket)!r})\n"
        "with contextlib.suppress(OSError):  # the daemon may answer and hang up before we send\n"
        '    s.sendall(b\'{"id":1,"cmd":"ping"}\\n\')\n'
        "print(s.recv(4096).decode())\n"
    )
    out = await anyio.run_process(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-I", "-c", code],
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()
    answer = json.loads(out.stdout)
    assert answer["ok"] is False and answer["error"]["code"] == "forbidden"
    c = await daemon.client()
    assert (await c.ok("ping"))["pong"]


class _Shared(Daemon):
    """A daemon whose socket lets in uid 65534 as a user and uid 65533 as an administrator."""

    def write_config(self) -> Path:
        cfg = super().write_config()
        text = cfg.read_text().replace(
            "[control]\n", "[control]\nallowed_uids = [65534]\nadmin_uids = [65533]\n"
        )
        cfg.write_text(text)
        return cfg


async def _as_uid(daemon: Daemon, uid: int, *commands: str) -> list[dict[str, object]]:
    """Each command's answer, asked on one connection by a process running as ``uid``."""
    code = (
        "import json, socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"s.connect({str(daemon.socket)!r})\n"
        "f = s.makefile('rb')\n"
        "for i, cmd in enumerate(sys.argv[1:]):\n"
        "    try:\n"
        "        s.sendall(json.dumps({'id': i, 'cmd': cmd}).encode() + b'\\n')\n"
        "    except BrokenPipeError:\n"  # a peer let in as nobody is answered and hung up on at once
        "        pass\n"
        "    print(f.readline().decode().strip())\n"
    )
    out = await anyio.run_process(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable, "-I", "-c", code,
         *commands],
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid (setpriv) needs root")
async def test_a_user_may_submit_and_see_the_queue_but_not_read_or_change_the_mail() -> None:
    """Postfix's split: anyone let in may submit, mailq and flush; postcat, postsuper and reload are root's.
    A user added to the socket's group to submit must not read, delete or hold everyone's mail."""
    async with serving(_Shared(short_root())) as daemon:
        os.chmod(daemon.socket, 0o666)  # the other users reach the socket: the peer check decides
        user = [
            "ping",
            "status",
            "queue",
            "flush",
            "list",
            "fetch",
            "rm",
            "abort",
            "hold",
            "offline",
            "reload",
        ]
        answers = dict(zip(user, await _as_uid(daemon, 65534, *user), strict=True))
        for cmd in ("ping", "status", "queue", "flush"):
            assert answers[cmd]["ok"] is True, answers[cmd]
        for cmd in ("list", "fetch", "rm", "abort", "hold", "offline", "reload"):
            assert answers[cmd]["ok"] is False and answers[cmd]["error"]["code"] == "forbidden", answers[cmd]
        listed, reloaded = await _as_uid(daemon, 65533, "list", "reload")  # an administrator
        assert listed["ok"] is True and reloaded["ok"] is True, (listed, reloaded)
        (refused,) = await _as_uid(daemon, 65532, "ping")  # let in as neither
        assert refused["error"]["code"] == "forbidden"


def _one_request_as_uid(uid: int, request: str, socket_path: Path) -> list[str]:
    """A command line that sends ``request`` as ``uid`` and prints every line the daemon answers with,
    until it hangs up."""
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.settimeout(30)\n"
        "s.connect(sys.argv[1])\n"
        "s.sendall(sys.argv[2].encode() + b'\\n')\n"
        "for line in s.makefile('rb'):\n"
        "    print(line.decode().strip(), flush=True)\n"
    )
    setpriv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    return [*setpriv, sys.executable, "-I", "-c", code, str(socket_path), request]


def _demote(daemon: Daemon) -> None:
    """The configuration with uid 65533 a user, no longer an administrator (not reloaded)."""
    cfg = daemon.write_config()
    text = cfg.read_text().replace("allowed_uids = [65534]\nadmin_uids = [65533]\n", "")
    cfg.write_text(text.replace("[control]\n", "[control]\nallowed_uids = [65534, 65533]\n"))


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid (setpriv) needs root")
async def test_a_reload_that_takes_an_administrators_rights_ends_its_event_stream() -> None:
    """Rights are the configuration's as it is now: a subscribe stream opened by an administrator does
    not go on after a reload made it a user (it is told ``forbidden`` and hung up on)."""
    async with serving(_Shared(short_root())) as daemon:
        os.chmod(daemon.socket, 0o666)
        subscribe = '{"id": 1, "cmd": "subscribe", "args": {}}'
        async with await anyio.open_process(_one_request_as_uid(65533, subscribe, daemon.socket)) as watcher:
            assert watcher.stdout is not None
            lines = watcher.stdout
            buffered = b""
            with anyio.fail_after(30):
                while b"\n" not in buffered:
                    buffered += await lines.receive()
            assert json.loads(buffered.split(b"\n")[0])["event"]["type"] == "subscribed"
            _demote(daemon)
            applied = (await (await daemon.client()).ok("reload"))["applied"]
            assert sorted(applied) == ["control.admin_uids", "control.allowed_uids"], applied
            with anyio.fail_after(30):
                async for chunk in lines:  # until the daemon hangs up
                    buffered += chunk
            assert await watcher.wait() == 0
        last = json.loads(buffered.strip().split(b"\n")[-1])
        assert last["ok"] is False and last["error"]["code"] == "forbidden", last


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid (setpriv) needs root")
async def test_an_administrator_whose_reload_makes_it_a_user_is_answered_then_hung_up_on() -> None:
    """The reload is applied and answered in full (its connection losing its rights must not cut it
    short, a listener half moved); then the connection is told ``forbidden``."""
    async with serving(_Shared(short_root())) as daemon:
        os.chmod(daemon.socket, 0o666)
        _demote(daemon)
        reload = '{"id": 1, "cmd": "reload"}'
        done = await anyio.run_process(_one_request_as_uid(65533, reload, daemon.socket), check=False)
        assert done.returncode == 0, done.stderr.decode()
        answered, hung_up = (json.loads(line) for line in done.stdout.splitlines())
        assert answered["ok"] is True and answered["result"]["reloaded"] is True, answered
        assert hung_up["ok"] is False and hung_up["error"]["code"] == "forbidden", hung_up
        await daemon.log_line(lambda line: b"configuration reloaded" in line)


async def test_sigterm_exits_0_and_removes_the_socket(daemon: Daemon) -> None:
    assert daemon.socket.exists()
    assert await daemon.stop() == 0
    assert not daemon.socket.exists()

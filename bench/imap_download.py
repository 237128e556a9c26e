"""IMAP download throughput: spoolerd's IMAP transport against getmail6, from the same private Dovecot.

    python bench/imap_download.py [--messages 1000] [--size 4096] [--json FILE]   (as root)

In one run, two accounts on one private Dovecot each get the same N messages (APPENDed beforehand,
not timed); then:
  spoolerd  a daemon with one SQLite store and the account as an ``imap`` transport (after_download =
            seen) starts; timed from its start until a flush --download returns, i.e. until every
            message is committed (with its UID) and flagged \\Seen on the server.
  getmail   getmail6 (SimpleIMAPRetriever, Maildir destination, read_all, delete = false,
            mark-as-seen by its own default) fetches the other account; timed from start to exit.
Prints messages/second for both and the ratio. Also the IDLE latency: a message APPENDed by another
client, until the store announces it (median of 20).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.peers, when run as a script

import aioimaplib

from tests.peers.dovecot import Dovecot, available
from tests.peers.ports import free_port

PASSWORD = "bench-secret"


def content(i: int, size: int) -> bytes:
    head = (
        f"From: bench@example.org\r\nTo: me@example.org\r\nSubject: bench {i}\r\n"
        f"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{i}@bench.test>\r\n\r\n"
    ).encode()
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


async def fill(port: int, user: str, messages: int, size: int) -> None:
    imap = aioimaplib.IMAP4("127.0.0.1", port, timeout=30)
    await imap.wait_hello_from_server()
    await imap.login(user, PASSWORD)
    for i in range(messages):
        response = await imap.append(content(i, size), mailbox="INBOX")
        assert response.result == "OK", response
    await imap.logout()


def imap_section(port: int, user: str, password_file: Path) -> dict[str, Any]:
    return {
        "provider": "imap",
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "username": user,
        "password_file": str(password_file),
        "after_download": "seen",
    }


async def spoolerd_leg(port: int, user: str, root: Path, messages: int) -> dict[str, Any]:
    from spoolerd.config import parse_config
    from spoolerd.daemon import build, running
    from spoolerd.message import FolderRole
    from spoolerd.plugins import PluginRegistry
    from spoolerd.transport import Direction

    secret = root / "password"
    secret.write_text(PASSWORD + "\n")
    data = {
        "spooler": {"state_dir": str(root / "state")},
        "control": {"socket": str(root / "control.sock")},
        "log": {"level": "warning"},
        "stores": {"local": {"provider": "sqlite"}},
        "transports": {"mail": imap_section(port, user, secret)},
    }
    started = time.perf_counter()
    daemon = build(parse_config(data), PluginRegistry())
    async with running(daemon):
        transport = next(t for t in daemon.transports if t.name == "mail")
        await transport.flush(Direction.DOWNLOAD)  # returns after a pass that began after the first
        elapsed = time.perf_counter() - started
        store = daemon.stores["local"]
        inbox = await store.folder(FolderRole.INBOX)
        got = len(await store.list_messages(inbox.id))
        assert got == messages, f"spoolerd stored {got} of {messages}"
        latency = await idle_latency(daemon, port, user)
    return {"seconds": elapsed, "per_second": messages / elapsed, "idle_latency_ms": latency}


async def idle_latency(daemon: Any, port: int, user: str, samples: int = 20) -> float:
    """An APPEND by another client until the store announces the new message, IDLE doing the work."""
    from spoolerd.events import NewMail

    store = daemon.stores["local"]
    imap = aioimaplib.IMAP4("127.0.0.1", port, timeout=30)
    await imap.wait_hello_from_server()
    await imap.login(user, PASSWORD)
    took = []
    async with store.subscribe() as events:
        for i in range(samples):
            start = time.perf_counter()
            await imap.append(content(100_000 + i, 2000), mailbox="INBOX")
            while not isinstance(await asyncio.wait_for(events.receive(), 10), NewMail):
                pass
            took.append((time.perf_counter() - start) * 1000)
    await imap.logout()
    return statistics.median(took)


def getmail_leg(port: int, user: str, root: Path, messages: int) -> dict[str, Any]:
    getmail = shutil.which("getmail")
    if getmail is None:
        return {"skipped": "getmail6 is not installed (pip install getmail6)"}
    maildir = root / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
        if os.geteuid() == 0:
            os.chown(maildir / sub, 65534, 65534)
    root.chmod(0o755)
    rc = root / "getmailrc"
    rc.write_text(
        f"[retriever]\ntype = SimpleIMAPRetriever\nserver = 127.0.0.1\nport = {port}\n"
        f"username = {user}\npassword = {PASSWORD}\nmailboxes = ('INBOX',)\n"
        f"[destination]\ntype = Maildir\npath = {maildir}/\n"
        + ("user = nobody\n" if os.geteuid() == 0 else "")  # getmail will not deliver as root
        + "[options]\nread_all = true\ndelete = false\nverbose = 0\n"
    )
    started = time.perf_counter()
    subprocess.run([getmail, "--rcfile", str(rc), "--getmaildir", str(root)], check=True)
    elapsed = time.perf_counter() - started
    got = len(list((maildir / "new").iterdir())) + len(list((maildir / "cur").iterdir()))
    assert got == messages, f"getmail stored {got} of {messages}"
    return {"seconds": elapsed, "per_second": messages / elapsed}


async def bench(messages: int, size: int) -> dict[str, Any]:
    server = Dovecot(free_port(), password=PASSWORD)
    server.start()
    try:
        await fill(server.imap_port, "spool", messages, size)
        await fill(server.imap_port, "getmail", messages, size)
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            ours = await spoolerd_leg(server.imap_port, "spool", Path(a), messages)
            theirs = await asyncio.to_thread(getmail_leg, server.imap_port, "getmail", Path(b), messages)
    finally:
        server.stop()
    result = {"messages": messages, "size": size, "spoolerd": ours, "getmail": theirs}
    if "per_second" in theirs:
        result["ratio"] = ours["per_second"] / theirs["per_second"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "imap_download.json")
    args = parser.parse_args()
    why = available()
    if why:
        sys.exit(why)
    from spoolerd import eventloop

    result = eventloop.run(bench, args.messages, args.size)
    ours, theirs = result["spoolerd"], result["getmail"]
    print(f"{args.messages} messages of {args.size} bytes")
    print(f"  spoolerd  {ours['per_second']:8.0f} msg/s  ({ours['seconds']:.2f} s)")
    if "per_second" in theirs:
        print(f"  getmail6  {theirs['per_second']:8.0f} msg/s  ({theirs['seconds']:.2f} s)")
        print(f"  ratio     {result['ratio']:8.2f}")
    else:
        print(f"  getmail6  {theirs['skipped']}")
    print(f"  IDLE latency (median of 20): {ours['idle_latency_ms']:.0f} ms")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

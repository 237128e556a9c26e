"""kill -9 torture of the listener: clients submit while the daemon is killed with SIGKILL and restarted
ten times. Every message that got a 250 is delivered (none lost); a message is delivered under two queue
ids (accepted twice) only if its client never saw the 250 (RFC 5321 §6.1: at least once)."""

from __future__ import annotations

import signal
import smtplib
import threading
from collections import defaultdict
from typing import Any

import anyio
import pytest

from tests.listener.conftest import ListenerDaemon, in_thread, message

ROUNDS = 10
PER_ROUND = 15  # acknowledged messages between two kills (at least)
CLIENTS = 4


class Ledger:
    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.next = 0
        self.acked: dict[int, str] = {}  # message number -> queue id in its 250
        self.unknown: set[int] = set()  # sent, but no 250 seen (refused, reset, killed mid-way)
        self.up = threading.Event()
        self.stop = threading.Event()

    def number(self) -> int:
        with self.lock:
            self.next += 1
            return self.next

    def wait_acked(self, count: int) -> None:
        with self.lock:
            self.lock.wait_for(lambda: len(self.acked) >= count or self.stop.is_set(), timeout=30)


def client(d: ListenerDaemon, ledger: Ledger) -> None:
    while not ledger.stop.is_set():
        ledger.up.wait()
        n = ledger.number()
        try:
            with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
                s.ehlo("torture")
                s.mail("app@example.com")
                s.rcpt(f"m{n}@remote.test")
                code, reply = s.data(message(f"torture {n}", to=f"m{n}@remote.test"))
        except (OSError, smtplib.SMTPException):
            with ledger.lock:
                ledger.unknown.add(n)
            if not _reachable(d):
                ledger.up.clear()  # the daemon is down: wait for the restart instead of spinning
            continue
        with ledger.lock:
            if code == 250:
                ledger.acked[n] = reply.decode().rsplit(" ", 1)[1]
            else:
                ledger.unknown.add(n)
            ledger.lock.notify_all()


def _reachable(d: ListenerDaemon) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", d.port), timeout=5).close()
    except OSError:
        return False
    return True


@pytest.mark.slow
async def test_kill_9_loses_no_acknowledged_message(make_daemon: Any) -> None:
    d: ListenerDaemon = await make_daemon()
    ledger = Ledger()
    ledger.up.set()
    threads = [threading.Thread(target=client, args=(d, ledger), daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        with anyio.fail_after(50):
            for round_ in range(1, ROUNDS + 1):
                await in_thread(ledger.wait_acked, round_ * PER_ROUND)
                assert d.proc is not None
                d.proc.send_signal(signal.SIGKILL)
                assert await d.proc.wait() == -signal.SIGKILL
                if d.reader is not None:
                    await d.reader
                await d.close_clients()
                await d.start()
                ledger.up.set()
    finally:
        ledger.stop.set()
        ledger.up.set()
        for t in threads:
            await in_thread(t.join, 15)
    with anyio.fail_after(30):
        await d.drained()
    delivered: dict[int, set[str]] = defaultdict(set)
    for line in d.delivered_log.read_text().splitlines():
        queue_id, address = line.split()
        delivered[int(address[1:].split("@")[0])].add(queue_id)
    lost = sorted(n for n in ledger.acked if n not in delivered)
    assert not lost, f"acknowledged but not delivered: {lost}"
    twice = {n for n, ids in delivered.items() if len(ids) > 1}
    assert not (twice & set(ledger.acked)), f"accepted twice although a 250 was seen: {twice}"
    assert len(ledger.acked) >= ROUNDS * PER_ROUND

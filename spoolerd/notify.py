"""The systemd notify protocol (sd_notify): READY=1, STATUS=…, WATCHDOG=1, STOPPING=1 sent as datagrams
to ``$NOTIFY_SOCKET``. Without that variable every call is a no-op, so the daemon behaves the same
outside systemd."""

from __future__ import annotations

import os
import socket

import anyio

__all__ = ["Notifier", "watchdog_interval"]


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # an abstract socket
        self.address = address or None

    def send(self, *fields: str) -> bool:
        if self.address is None:
            return False
        message = "\n".join(fields).encode()
        if b"\r" in message:
            raise ValueError("notify fields may not contain CR")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.sendto(message, self.address)
            except OSError:
                return False
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    async def watchdog(self, interval: float) -> None:
        """Ping the watchdog at ``interval`` (half of WATCHDOG_USEC, as systemd advises) forever."""
        while True:
            self.send("WATCHDOG=1")
            await anyio.sleep(interval)  # a timer systemd asked for, only when WATCHDOG_USEC is set


def watchdog_interval() -> float | None:
    """Half the watchdog timeout systemd set for this process, or None when there is none."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None

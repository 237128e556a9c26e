"""A free TCP port on 127.0.0.1, for peers that will not take port 0 themselves (aiosmtpd's Controller,
smtp-sink, a private Postfix)."""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

"""Preprocessors (RegisterPreprocessor): functions the spooler runs on a locked message before sending.

They come from two places, run in registration order: transports (``preprocessors()``; each runs only on
messages its own transport handles) and the ``spoolerd.preprocessors`` entry points (every message). The
built-in ``headers`` preprocessor adds the Date and Message-ID fields a submission may lack (RFC 6409
§8.2, §8.3), as a message submission agent does.
"""

from __future__ import annotations

import re
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import Protocol

from .message import Message, NewRecipient

__all__ = ["HeadersPreprocessor", "PreprocessResult", "Preprocessor", "add_missing_headers"]


@dataclass(frozen=True, slots=True)
class PreprocessResult:
    """What a preprocessor changed; ``None`` leaves that part as it was."""

    content: bytes | None = None
    recipients: Sequence[NewRecipient] | None = None


class Preprocessor(Protocol):
    name: str

    async def __call__(self, message: Message, now: float) -> PreprocessResult: ...


_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.M)


def _header_section(content: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        end = content.find(sep)
        if end >= 0:
            return content[: end + len(sep) // 2], content[end + len(sep) // 2 :]
    return content, b""


def add_missing_headers(content: bytes, *, now: float, domain: str) -> bytes | None:
    """``content`` with Date and Message-ID prepended when missing; ``None`` when both are there."""
    header, _body = _header_section(content)
    names = {m.group(1).lower() for m in _FIELD.finditer(header)}
    newline = b"\r\n" if b"\r\n" in header or not header else b"\n"
    added = b""
    if b"date" not in names:
        added += b"Date: " + formatdate(now, localtime=False).encode() + newline
    if b"message-id" not in names:
        added += b"Message-ID: <" + f"{secrets.token_hex(12)}@{domain}".encode() + b">" + newline
    if not added:
        return None
    if not header.strip():  # no header section at all: start one
        return added + newline + content
    return added + content


class HeadersPreprocessor:
    """Entry point ``headers`` in ``spoolerd.preprocessors``."""

    name = "headers"

    def __init__(self, domain: str | None = None) -> None:
        self._domain = domain or socket.gethostname() or "localhost"

    async def __call__(self, message: Message, now: float) -> PreprocessResult:
        _, at, sender_domain = message.sender.rpartition("@")
        domain = sender_domain if at and sender_domain else self._domain
        return PreprocessResult(content=add_missing_headers(message.content, now=now, domain=domain))

"""Preprocessors (RegisterPreprocessor): functions the spooler runs on a locked message before sending.

They come from two places, run in registration order: transports (``preprocessors()``; each runs only on
messages its own transport handles) and the ``spoolerd.preprocessors`` entry points (every message). The
built-in ``headers`` preprocessor adds the Date and Message-ID fields a submission may lack (RFC 6409
§8.2, §8.3), as a message submission agent does.

A preprocessor that seals the content (a signature, as ``dkim`` adds) declares ``signs = True``: it runs
after every other one, transports' included, since a change made after it would break what it signed.
An entry point may take settings: a class with a pydantic ``Settings`` model is built with its validated
``[preprocessors.NAME]`` section (``PluginRegistry.preprocessor``). A preprocessor that must stop the
message (a required signature it cannot make) answers ``refused``: every pending recipient gets that
outcome (FAILED: returned to the sender with an NDR; DEFERRED: tried again later) and nothing the
preprocessors changed is saved, so the next attempt preprocesses again.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from .envelope import field_date, field_names, with_field
from .message import Message, NewRecipient
from .transport import Outcome

__all__ = [
    "HeadersPreprocessor",
    "PreprocessResult",
    "Preprocessor",
    "Signer",
    "add_missing_headers",
    "signs_last",
]


@dataclass(frozen=True, slots=True)
class PreprocessResult:
    """What a preprocessor changed; ``None`` leaves that part as it was."""

    content: bytes | None = None
    recipients: Sequence[NewRecipient] | None = None
    refused: Outcome | None = None  # FAILED or DEFERRED: the message is not sent in this attempt


class Preprocessor(Protocol):
    name: str

    async def __call__(self, message: Message, now: float) -> PreprocessResult: ...


@runtime_checkable
class Signer(Protocol):
    """A preprocessor that signs what the others made: it runs last."""

    name: str
    signs: Literal[True]

    async def __call__(self, message: Message, now: float) -> PreprocessResult: ...


def signs_last(preprocessor: Preprocessor) -> bool:
    """Sort key putting signers after every other preprocessor, keeping the order within each kind."""
    return isinstance(preprocessor, Signer) and preprocessor.signs is True


def add_missing_headers(content: bytes, *, now: float, domain: str) -> bytes | None:
    """``content`` with Date and Message-ID put first when its header section lacks them; ``None`` when
    both are there. The header section is ``envelope``'s, so a ``Date:`` line in the body is body text."""
    present = field_names(content)
    if "date" in present and "message-id" in present:
        return None
    if "message-id" not in present:
        content = with_field(content, b"Message-ID: <" + f"{secrets.token_hex(12)}@{domain}".encode() + b">")
    if "date" not in present:
        content = with_field(content, b"Date: " + field_date(now).encode())
    return content


class HeadersPreprocessor:
    """Entry point ``headers`` in ``spoolerd.preprocessors``."""

    name = "headers"

    def __init__(self, domain: str | None = None) -> None:
        self._domain = domain or socket.gethostname() or "localhost"

    async def __call__(self, message: Message, now: float) -> PreprocessResult:
        _, at, sender_domain = message.sender.rpartition("@")
        domain = sender_domain if at and sender_domain else self._domain
        return PreprocessResult(content=add_missing_headers(message.content, now=now, domain=domain))

"""How a diagnostic quotes a peer's reply: ``mx.example.net:25 said: 550 5.1.1 words (in reply to RCPT
TO)``. The smtp transport writes it (``said``); the mail log drops the part naming the relay, which has a
key of its own (``maillog.reply_text``), and an NDR's Diagnostic-Code gives the reply as the peer gave
it (``quoted``). One format, kept here."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SAID", "Quoted", "quoted", "said"]

SAID = " said: "  # between the peer's name and its reply

_QUOTED = re.compile(r" said: (?P<code>\d{3}) (?P<words>.*?)(?: \(in reply to [^()]*\))?\Z", re.S)


def said(peer: str, code: int, words: str, command: str) -> str:
    """``peer``'s reply ``code`` ``words`` (on one line) to ``command``, quoted."""
    return f"{peer}{SAID}{code} {' '.join(words.split())} (in reply to {command})"


@dataclass(frozen=True, slots=True)
class Quoted:
    """A peer's reply read back from a diagnostic ``said`` wrote."""

    code: int
    words: str  # as the peer gave them (enhanced status code included), without the command


def quoted(diagnostic: str) -> Quoted | None:
    """The reply ``diagnostic`` quotes, or ``None`` when it quotes none (a diagnostic of our own)."""
    found = _QUOTED.search(diagnostic)
    return None if found is None else Quoted(int(found["code"]), found["words"])

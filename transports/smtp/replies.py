"""The SMTP transport's rules, with no I/O: what a message needs of the relay, which MAIL options say
so, and how each reply (or its absence) becomes a per-recipient outcome.

A 5xx reply fails what it is about; a 4xx reply defers it; a reply that never came (connection lost,
timeout, TLS failure) defers with no code, which the spooler reads as "the relay is down". Enhanced
status codes (RFC 3463) are kept as the relay sent them, else derived from the reply's class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spoolerd.said import said
from spoolerd.transport import Outcome, OutcomeKind
from spoolerd.wiretext import has_control

__all__ = [
    "Reply",
    "Requirements",
    "bad_address",
    "expected",
    "mail_options",
    "no_reply",
    "outcome_for",
    "requirements",
]

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")
_HEADER_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply from the relay, and the command it answered (for the diagnostic)."""

    code: int
    text: str
    command: str

    @property
    def status(self) -> str:
        """The enhanced status code the relay gave, else the generic one of the reply's class."""
        found = _ENHANCED.match(self.text)
        if found and found.group(1) == str(self.code)[0]:
            return f"{found.group(1)}.{found.group(2)}.{found.group(3)}"
        return f"{str(self.code)[0]}.0.0" if str(self.code)[0] in "245" else "4.0.0"  # 1xx/3xx: retry

    @property
    def detail(self) -> str:
        """The reply text without its enhanced status code, on one line."""
        text = " ".join(self.text.split())
        found = _ENHANCED.match(text)
        if found and found.group(1) == str(self.code)[0]:
            text = text[found.end() :]
        return text


def expected(reply: Reply) -> bool:
    """A reply that SMTP allows for success at this step (250 for MAIL and the end of DATA, 250 or 251
    for RCPT; nothing for the DATA command itself, whose 354 is not an ending); any other 1xx-3xx is a
    protocol error, not a success."""
    if reply.command == "DATA":
        return False
    return reply.code == 250 or (reply.code == 251 and reply.command == "RCPT TO")


def outcome_for(reply: Reply, peer: str) -> Outcome:
    """The outcome of a reply that ends what it answers: success delivered, 5xx failed, else deferred."""
    status = reply.status  # recorded; the diagnostic quotes the reply as given, no status made up for it
    diagnostic = said(peer, reply.code, reply.text, reply.command)
    if expected(reply):
        return Outcome(OutcomeKind.DELIVERED, reply.code, status, diagnostic, relay=peer)
    if 500 <= reply.code < 600:
        return Outcome(OutcomeKind.FAILED, reply.code, status, diagnostic, relay=peer)
    if not 400 <= reply.code < 500:  # a reply SMTP does not allow here: try again later
        status = "4.5.0"
        diagnostic = (
            f"{peer} gave an unexpected reply: {reply.code} {reply.detail} (in reply to {reply.command})"
        )
    return Outcome(OutcomeKind.DEFERRED, reply.code, status, diagnostic, relay=peer)


def no_reply(cause: str, peer: str, status: str = "4.4.2") -> Outcome:
    """No usable reply came (connection refused or lost, timeout, TLS failure): defer, with no code."""
    return Outcome(OutcomeKind.DEFERRED, None, status, f"{peer}: {cause}", relay=peer)


def bad_address(address: str) -> bool:
    """Anything that would break the command line or the angle-bracket path."""
    return has_control(address) or "<" in address or ">" in address


@dataclass(frozen=True, slots=True)
class Requirements:
    """What sending one message takes of the relay."""

    size: int  # octets on the wire, before dot-stuffing
    eight_bit: bool  # some octet above 127 (BODY=8BITMIME)
    smtputf8: bool  # a non-ASCII address or header (RFC 6531)


def requirements(wire: bytes, sender: str, recipients: list[str]) -> Requirements:
    eight_bit = not wire.isascii()
    smtputf8 = not sender.isascii() or not all(r.isascii() for r in recipients)
    if eight_bit and not smtputf8:
        end = _HEADER_END.search(wire)
        smtputf8 = not wire[: end.start() if end else len(wire)].isascii()
    return Requirements(len(wire), eight_bit, smtputf8)


def mail_options(need: Requirements, extensions: dict[str, str], peer: str) -> list[str] | Outcome:
    """MAIL FROM parameters for ``need``, or the permanent failure when the relay cannot take it."""
    options = []
    if "size" in extensions:
        limit = extensions["size"].strip()
        if limit.isdigit() and int(limit) > 0 and need.size > int(limit):
            return Outcome.failed(
                f"message size {need.size} exceeds the size limit {limit} of {peer}", None, "5.3.4"
            )
        options.append(f"SIZE={need.size}")
    if need.smtputf8:
        if "smtputf8" not in extensions:
            return Outcome.failed(
                f"the message needs SMTPUTF8 (non-ASCII addresses or headers), which {peer} does not offer",
                None,
                "5.6.7",
            )
        options.append("SMTPUTF8")
    if need.eight_bit:
        if "8bitmime" not in extensions:
            return Outcome.failed(
                f"the message has 8-bit content and {peer} does not offer 8BITMIME", None, "5.6.3"
            )
        options.append("BODY=8BITMIME")
    return options

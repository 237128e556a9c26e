"""What a relay may be sent, with no I/O: lines of at most 998 octets (RFC 5321 §4.5.3.1.6) and, for a
relay without 8BITMIME, 7-bit content (RFC 6152 §3 allows the conversion). The smtp transport sends what
this makes; the dkim preprocessor signs it beforehand, so the transport finds nothing left to change and
the signature holds. Like Postfix, the MIME parts that break a rule are re-encoded as quoted-printable
(base64 parts get short lines again); everything else is left as the email package's compat32 generator
writes it back. Signed content (multipart/signed, S/MIME) must not change: ``Unchangeable`` says why,
and the message is refused instead. Header sections are never rewritten: 8-bit headers need SMTPUTF8
(the transport's 5.6.7), and a header line over 998 octets is refused as well.
"""

from __future__ import annotations

import base64
import email
import email.generator
import io
import quopri
from email.message import Message as EmailMessage
from email.policy import compat32

from .lines import MAX_LINE, crlf, has_long_lines

__all__ = ["MAX_LINE", "Unchangeable", "conform", "crlf", "has_long_lines"]

_SIGNED = ("multipart/signed", "application/pkcs7-mime", "application/x-pkcs7-mime")


class Unchangeable(ValueError):
    """The content breaks a rule and may not be changed to follow it."""

    def __init__(self, reason: str, status: str) -> None:
        super().__init__(reason)
        self.status = status


def conform(wire: bytes, *, eight_bit: bool) -> bytes:
    """``wire`` (CRLF) as a relay may take it; ``eight_bit``: the relay offers 8BITMIME. Content that
    already conforms is returned as it is (the common case costs a C scan or two)."""
    too_long = has_long_lines(wire)
    needs_7bit = not eight_bit and not wire.isascii()
    if not (too_long or needs_7bit):
        return wire
    message = email.message_from_bytes(wire, policy=compat32)
    if _signed(message):
        what = "lines over 998 octets" if too_long else "8-bit content"
        raise Unchangeable(f"signed content has {what} and must not be re-encoded", "5.6.3")
    head = wire[: len(wire) - len(_raw_body(wire))]
    if has_long_lines(head):
        raise Unchangeable("a header line is longer than 998 octets", "5.6.0")
    if not message.is_multipart() and message.get("MIME-Version") is None:
        _make_mime(message)
    for part in message.walk():
        if not part.is_multipart():
            _fix_part(part, needs_7bit)
    out = io.BytesIO()
    email.generator.BytesGenerator(out, mangle_from_=False, maxheaderlen=0).flatten(message)
    return crlf(out.getvalue())


def _signed(message: EmailMessage) -> bool:
    return any(part.get_content_type() in _SIGNED for part in message.walk())


def _raw_body(wire: bytes) -> bytes:
    end = wire.find(b"\r\n\r\n")
    return b"" if end < 0 else wire[end + 4 :]


def _make_mime(message: EmailMessage) -> None:
    """A plain RFC 5322 message becomes a one-part MIME text message, so its body can be encoded."""
    data = _payload_bytes(message)
    try:
        data.decode("utf-8")
        charset = "utf-8" if not data.isascii() else "us-ascii"
    except UnicodeDecodeError:
        charset = "unknown-8bit"  # RFC 1428: 8-bit text of an unknown character set
    message["MIME-Version"] = "1.0"
    if message.get("Content-Type") is None:
        message["Content-Type"] = f"text/plain; charset={charset}"


def _payload_bytes(part: EmailMessage) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _fix_part(part: EmailMessage, needs_7bit: bool) -> None:
    raw = part.get_payload(decode=False)  # 8-bit text comes back decoded by its charset: re-encode
    encoded = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
    if not (has_long_lines(encoded) or (needs_7bit and not encoded.isascii())):
        return
    data = _payload_bytes(part)
    cte = (part.get("Content-Transfer-Encoding") or "").strip().lower()
    del part["Content-Transfer-Encoding"]
    if cte == "base64":
        part["Content-Transfer-Encoding"] = "base64"
        part.set_payload(base64.encodebytes(data).decode("ascii"))
        return
    part["Content-Transfer-Encoding"] = "quoted-printable"
    text = data.replace(b"\r\n", b"\n")  # line breaks stay line breaks; quopri wraps at 76
    part.set_payload(quopri.encodestring(text).decode("ascii"))

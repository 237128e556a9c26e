"""A message's lines, with no I/O: their endings made CRLF (a header's lone CRs folded as
``envelope.fold_lone_crs`` says), the RFC 5321 line length checked, and what a store records of them when
it writes a content (``lines_of``), so that a delivery need not scan the message again.

Every test here is a scan in C led by ``memchr``; a search for a two-octet string such as CRLF is the
slow kind (0.75 ms a megabyte, three times a one-octet count).
"""

from __future__ import annotations

import re

from .envelope import fold_header_crs
from .message import ContentLines

__all__ = ["MAX_LINE", "crlf", "has_dot_lines", "has_long_lines", "lines_of"]

MAX_LINE = 998  # octets of text in a line, without its CRLF (RFC 5321 §4.5.3.1.6)
_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LONE_CR = re.compile(rb"\r(?!\n)")
_WINDOW = 1 << 20  # octets split into lines at once by ``has_long_lines``
_BREAKS = (b"\r", b"\n")
_DOT_AFTER_LF = re.compile(rb"\n\.")  # found with memchr on the LF: twice the speed of ``in``


def _crlf_endings(content: bytes) -> bool:
    """No CR without an LF after it, and as many CRs as LFs, so no LF without a CR before it."""
    return content.count(b"\r") == content.count(b"\n") and not _LONE_CR.search(content)


def crlf(content: bytes) -> bytes:
    """Every line ending CRLF, the last line too; content already so is returned as it is. A lone CR in
    the header section ends no line for any reader here (``header_end``, as in Postfix), so on the wire
    it must not start a field that no check saw (``Subject: hi<CR>Bcc: x`` would reach the relay with
    its Bcc, or a second From): ``envelope.fold_header_crs``."""
    if not _crlf_endings(content):
        content = _LINE_ENDINGS.sub(b"\r\n", fold_header_crs(content))
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    return content


def has_dot_lines(data: bytes) -> bool:
    """A line that begins with ".", which SMTP's DATA must send doubled (RFC 5321 §4.5.2)."""
    return data.startswith(b".") or _DOT_AFTER_LF.search(data) is not None


def has_long_lines(data: bytes) -> bool:
    """A run of more than 998 octets without CR or LF. Measured by splitting, in C and linear (the
    regular expression ``[^\\r\\n]{999}`` it replaces retried from every offset: 0.9 s of CPU for a 1 MB
    message of 78-octet lines), a window at a time: ``splitlines`` makes an object of every line, which
    for a whole 50 MB message was 80 MB more at once."""
    if len(data) <= MAX_LINE:
        return False
    run = 0  # octets without CR or LF that end the windows before (never more than MAX_LINE)
    for start in range(0, len(data), _WINDOW):
        window = data[start : start + _WINDOW]
        lines = window.splitlines()  # a window is never empty: one line at least
        first = len(lines[0]) + (run if window[:1] not in _BREAKS else 0)
        if first > MAX_LINE or max(map(len, lines)) > MAX_LINE:
            return True
        ended = window[-1:] in _BREAKS  # else its last line goes on in the next window
        run = 0 if ended else first if len(lines) == 1 else len(lines[-1])
    return False


def lines_of(content: bytes) -> ContentLines:
    """Each fact of ``ContentLines`` that holds for ``content``."""
    lines = ContentLines.NONE
    if content.endswith(b"\r\n") and _crlf_endings(content):
        lines |= ContentLines.CRLF
    if not has_long_lines(content):
        # the fold of a header's lone CR puts a blank before what follows it (``crlf``): a line one
        # octet longer on the wire than here
        folded = fold_header_crs(content)
        if folded is content or not has_long_lines(folded):
            lines |= ContentLines.SHORT
    if not has_dot_lines(content):
        lines |= ContentLines.NO_DOT
    return lines

"""MAIL FROM and RCPT TO arguments, parsed with no I/O: the path and the ESMTP parameters the listener
knows (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 4954 AUTH, RFC 3461 RET, ENVID, NOTIFY,
ORCPT). Anything else, or anything malformed, is a ``Reply`` the session sends back as it is."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..dsn_params import (
    DsnRequest,
    Notify,
    RecipientDsn,
    Ret,
    check_envid,
    check_orcpt,
    parse_notify,
    parse_ret,
)
from ..dsn_params import xtext_decode as _xtext_decode
from ..errors import InvalidArgument, MessageTooLarge
from ..message_size import check_message_size, smtp_reply
from ..wiretext import has_control

__all__ = [
    "CommandRefused",
    "MailCommand",
    "RcptCommand",
    "Reply",
    "parse_mail",
    "parse_rcpt",
    "too_large",
    "xtext_decode",
]


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    status: str  # RFC 3463 enhanced status code
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"


class CommandRefused(ValueError):
    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


def _refuse(code: int, status: str, text: str) -> CommandRefused:
    return CommandRefused(Reply(code, status, text))


@dataclass(frozen=True, slots=True)
class MailCommand:
    sender: str  # "" is the null reverse-path
    size: int | None = None
    body: str = "7BIT"
    smtputf8: bool = False
    ret: Ret | None = None  # FULL or HDRS (RFC 3461)
    envid: str | None = None  # decoded from xtext

    def dsn(self, recipients: dict[str, RecipientDsn]) -> DsnRequest:
        """The transaction's RFC 3461 parameters: these, and the RCPTs' by address."""
        return DsnRequest(self.ret, self.envid, recipients=recipients)


@dataclass(frozen=True, slots=True)
class RcptCommand:
    address: str
    notify: Notify | None = None  # NEVER, or some of SUCCESS, FAILURE, DELAY; None: not given
    orcpt: str | None = None  # "rfc822;addr", decoded from xtext

    @property
    def dsn(self) -> RecipientDsn:
        return RecipientDsn(self.notify, self.orcpt)


_PARAM = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*)(?:=([\x21-\x3c\x3e-\x7e]+))?$")
_ROUTE = re.compile(r"^@[^:,]+(?:,@[^:,]+)*:")
_T = TypeVar("_T")


def _checked(check: Callable[[str], _T], value: str) -> _T:
    """A DSN parameter through its one check (``dsn_params``), a bad one refused with 501 5.5.4."""
    try:
        return check(value)
    except InvalidArgument as exc:
        raise _refuse(501, "5.5.4", str(exc)) from None


def xtext_decode(text: str) -> str:
    """RFC 3461 §4 xtext: ``+XX`` is the character with that hex code; the result has no controls."""
    decoded = _checked(_xtext_decode, text)
    if has_control(decoded):
        raise _refuse(501, "5.5.4", "control characters in a parameter")
    return decoded


def _split(arg: str | None, keyword: str) -> tuple[str, dict[str, str | None]]:
    """The path (without its brackets) and the parameters (upper-cased names) of ``FROM:<path> P=V``."""
    if arg is None or not arg[: len(keyword)].upper() == keyword:
        raise _refuse(501, "5.5.4", f"Syntax: {keyword} <address> [parameters]")
    rest = arg[len(keyword) :].lstrip(" ")
    if has_control(rest):
        raise _refuse(501, "5.5.4", "control characters in the command")
    if not rest.startswith("<"):
        raise _refuse(501, "5.5.4", f"Syntax: {keyword} <address> (in angle brackets)")
    close = _path_end(rest)
    path, params_text = rest[1:close], rest[close + 1 :]
    if params_text and not params_text.startswith(" "):
        raise _refuse(501, "5.5.4", "a space must separate the address from its parameters")
    params: dict[str, str | None] = {}
    for word in params_text.split():
        found = _PARAM.match(word)
        if found is None:
            raise _refuse(501, "5.5.4", f"malformed parameter {word[:40]!r}")
        name = found.group(1).upper()
        if name in params:
            raise _refuse(501, "5.5.4", f"{name} given twice")
        params[name] = found.group(2)
    return _ROUTE.sub("", path), params  # a source route is ignored (RFC 5321 §3.3)


def _path_end(text: str) -> int:
    """Index of the ``>`` closing the path, skipping quoted local parts (``<"a>b"@c>``)."""
    quoted = False
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and quoted:
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            return i
        i += 1
    raise _refuse(501, "5.5.4", "the address has no closing '>'")


def _check_mailbox(address: str, utf8: bool) -> str:
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or " " in domain or ".." in domain:
        raise _refuse(553, "5.1.3", f"bad address syntax: <{address[:80]}>")
    if len(local) > 64 or len(address) > 254:
        raise _refuse(553, "5.1.3", "address too long")
    if not utf8 and not address.isascii():
        raise _refuse(553, "5.6.7", "non-ASCII address without SMTPUTF8")
    if " " in local and not (local.startswith('"') and local.endswith('"')):
        raise _refuse(553, "5.1.3", f"bad address syntax: <{address[:80]}>")
    return address


def too_large(size: int, limit: int) -> None:
    """``message_size_limit``'s one check, as the SMTP reply RFC 1870 gives it (552 5.3.4)."""
    try:
        check_message_size(size, limit)
    except MessageTooLarge as exc:
        code, text = smtp_reply(exc)
        status, _, text = text.partition(" ")
        raise CommandRefused(Reply(code, status, text)) from exc


def parse_mail(arg: str | None, *, size_limit: int, utf8_offered: bool) -> MailCommand:
    """``FROM:<sender> [params]`` as a MailCommand; a too-large SIZE= is 552 5.3.4 (RFC 1870)."""
    path, params = _split(arg, "FROM:")
    smtputf8 = "SMTPUTF8" in params
    if smtputf8 and (params.pop("SMTPUTF8") is not None or not utf8_offered):
        raise _refuse(501, "5.5.4", "SMTPUTF8 takes no value")
    size = None
    if "SIZE" in params:
        raw = params.pop("SIZE") or ""
        if not raw.isdigit() or len(raw) > 20:
            raise _refuse(501, "5.5.4", "SIZE takes a number of bytes")
        size = int(raw)
        too_large(size, size_limit)
    body = (params.pop("BODY", None) or "7BIT").upper() if "BODY" in params else "7BIT"
    if body not in ("7BIT", "8BITMIME"):
        raise _refuse(501, "5.5.4", "BODY is 7BIT or 8BITMIME")
    ret = _checked(parse_ret, params.pop("RET") or "") if "RET" in params else None
    envid = None
    if "ENVID" in params:
        envid = _checked(check_envid, xtext_decode(params.pop("ENVID") or ""))
    params.pop("AUTH", None)  # RFC 4954 §5: the original submitter; we record our own facts instead
    if params:
        raise _refuse(555, "5.5.4", f"MAIL parameter not supported: {sorted(params)[0]}")
    sender = "" if path == "" else _check_mailbox(path, smtputf8)
    return MailCommand(sender, size, body, smtputf8, ret, envid)


def parse_rcpt(arg: str | None, *, smtputf8: bool) -> RcptCommand:
    """``TO:<recipient> [params]`` as a RcptCommand. ``<postmaster>`` is allowed without a domain."""
    path, params = _split(arg, "TO:")
    notify = _checked(parse_notify, params.pop("NOTIFY") or "") if "NOTIFY" in params else None
    orcpt = None
    if "ORCPT" in params:
        orcpt = _checked(check_orcpt, xtext_decode(params.pop("ORCPT") or ""))
    if params:
        raise _refuse(555, "5.5.4", f"RCPT parameter not supported: {sorted(params)[0]}")
    if path.lower() == "postmaster":
        return RcptCommand("postmaster", notify, orcpt)
    if not path:
        raise _refuse(501, "5.1.3", "a recipient cannot be the null address")
    return RcptCommand(_check_mailbox(path, smtputf8), notify, orcpt)

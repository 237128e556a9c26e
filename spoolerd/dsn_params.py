"""RFC 3461 DSN parameters as values, with no I/O: what a submitter asked of the reports about its
message (RET, ENVID per message; NOTIFY, ORCPT per recipient), checked once here for every path (the SMTP
listener, ``spoolerd-sendmail``, the control socket) and written back as SMTP parameters when relaying.

- ``Ret``: return the whole message (FULL) or only its header section (HDRS) in a non-delivery report.
- ``Notify``: NEVER (no report at all), or some of SUCCESS, FAILURE, DELAY; a recipient without NOTIFY
  (None) gets the message-level defaults (an NDR unless suppressed, a DR when asked, delay warnings).
- ENVID: at most 100 printable ASCII characters, kept decoded; ORCPT: ``addr-type;address``, decoded.
  Both travel on the wire as xtext (RFC 3461 §4).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import InvalidArgument
from .wiretext import has_control

__all__ = [
    "DsnRequest",
    "Notify",
    "RecipientDsn",
    "Ret",
    "check_envid",
    "check_orcpt",
    "notify_text",
    "parse_notify",
    "parse_ret",
    "wants",
    "xtext_decode",
    "xtext_encode",
]

ENVID_LIMIT = 100  # characters (RFC 3461 §4.4)
ORCPT_LIMIT = 500  # characters (RFC 3461 §4.2)


class Ret(enum.StrEnum):
    FULL = "full"
    HDRS = "hdrs"


class Notify(enum.IntFlag):
    """RFC 3461 §4.1 NOTIFY: NEVER is no bit at all (given, and asking for nothing)."""

    NEVER = 0
    SUCCESS = 1
    FAILURE = 2
    DELAY = 4


_EVENTS = {"SUCCESS": Notify.SUCCESS, "FAILURE": Notify.FAILURE, "DELAY": Notify.DELAY}


@dataclass(frozen=True, slots=True)
class RecipientDsn:
    """One recipient's DSN parameters as given (None: not given)."""

    notify: Notify | None = None
    orcpt: str | None = None  # "rfc822;user@example.org", decoded from xtext

    def args(self) -> dict[str, str]:
        given = {"orcpt": self.orcpt} if self.orcpt is not None else {}
        return given | ({"notify": notify_text(self.notify)} if self.notify is not None else {})


@dataclass(frozen=True, slots=True)
class DsnRequest:
    """What a submitter asked of the reports about one message: RET and ENVID, a NOTIFY for every
    recipient (``sendmail -N``), and NOTIFY/ORCPT per recipient as given (the SMTP listener's RCPTs), by
    the recipient's address as the submitter wrote it."""

    ret: Ret | None = None
    envid: str | None = None
    notify: Notify | None = None
    recipients: Mapping[str, RecipientDsn] = field(default_factory=dict)

    @classmethod
    def parsed(
        cls,
        ret: str | None = None,
        envid: str | None = None,
        notify: str | None = None,
        recipients: Mapping[str, Mapping[str, str]] | None = None,
    ) -> DsnRequest:
        """From text (the control socket's ``submit`` arguments); ``InvalidArgument`` for a bad value."""
        for address, given in (recipients or {}).items():
            if unknown := sorted(set(given) - {"notify", "orcpt"}):
                raise InvalidArgument(
                    f"recipient_dsn for {address[:80]!r}: {unknown[0]!r} is not notify or orcpt"
                )
        per_recipient = {
            address: RecipientDsn(
                None if given.get("notify") is None else parse_notify(given["notify"]),
                None if given.get("orcpt") is None else check_orcpt(given["orcpt"]),
            )
            for address, given in (recipients or {}).items()
        }
        return cls(
            None if ret is None else parse_ret(ret),
            None if envid is None else check_envid(envid),
            None if notify is None else parse_notify(notify),
            per_recipient,
        )

    def args(self) -> dict[str, object]:
        """The other way: what ``parsed`` reads, leaving out what was not given."""
        given: dict[str, object] = {}
        if self.ret is not None:
            given["ret"] = self.ret.value
        if self.envid is not None:
            given["envid"] = self.envid
        if self.notify is not None:
            given["notify"] = notify_text(self.notify)
        if self.recipients:
            given["recipient_dsn"] = {a: d.args() for a, d in self.recipients.items()}
        return given

    def of(self, address: str) -> RecipientDsn:
        """The parameters of the recipient given as ``address`` (else the message-wide NOTIFY)."""
        return self.recipients.get(address) or RecipientDsn(self.notify)


def parse_notify(text: str) -> Notify:
    """``NEVER`` or a comma-separated list of SUCCESS, FAILURE, DELAY (any case), as a ``Notify``."""
    words = {w.strip().upper() for w in text.split(",")}
    if words == {"NEVER"}:
        return Notify.NEVER
    if not words or not words <= _EVENTS.keys():
        raise InvalidArgument(f"NOTIFY {text[:60]!r}: give NEVER, or some of SUCCESS, FAILURE, DELAY")
    found = Notify.NEVER
    for word in words:
        found |= _EVENTS[word]
    return found


def notify_text(notify: Notify) -> str:
    """The NOTIFY parameter's value: ``NEVER`` or ``SUCCESS,FAILURE,DELAY`` (in that order)."""
    return ",".join(name for name, bit in _EVENTS.items() if bit & notify) or "NEVER"


def wants(notify: Notify | None, event: Notify, default: bool) -> bool:
    """Whether a recipient with ``notify`` gets a report of ``event``; without NOTIFY, ``default``."""
    return default if notify is None else bool(notify & event)


def parse_ret(text: str) -> Ret:
    try:
        return Ret(text.strip().lower())
    except ValueError:
        raise InvalidArgument(f"RET {text[:20]!r}: give FULL or HDRS") from None


def check_envid(envid: str) -> str:
    """An ENVID (decoded): 1 to 100 printable ASCII characters (RFC 3461 §4.4)."""
    if not envid or len(envid) > ENVID_LIMIT or not re.fullmatch(r"[\x20-\x7e]+", envid):
        raise InvalidArgument(f"ENVID must be 1 to {ENVID_LIMIT} printable ASCII characters")
    return envid


def check_orcpt(orcpt: str) -> str:
    """An ORCPT (decoded): ``addr-type;address`` with an atom for the type and no control characters."""
    kind, semi, address = orcpt.partition(";")
    if (
        not semi
        or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", kind)
        or not address
        or len(orcpt) > ORCPT_LIMIT
        or has_control(address)
    ):
        raise InvalidArgument(f"ORCPT {orcpt[:60]!r}: give addr-type;address (rfc822;user@example.org)")
    return orcpt


_XCHAR = re.compile(r"[^\x21-\x2a\x2c-\x3c\x3e-\x7e]")
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")
_HEXCHAR = re.compile(r"\+([0-9A-F]{2})")


def xtext_encode(text: str) -> str:
    """RFC 3461 §4 xtext: ``+``, ``=``, space, controls and non-ASCII as ``+XX`` (UTF-8 octets)."""

    def hexchar(m: re.Match[str]) -> str:
        return "".join(f"+{b:02X}" for b in m.group().encode("utf-8"))

    return _XCHAR.sub(hexchar, text)


def xtext_decode(text: str) -> str:
    """``+XX`` back to the octet it names (UTF-8 text); ``InvalidArgument`` for what is not xtext."""
    if not _XTEXT.fullmatch(text):
        raise InvalidArgument("malformed xtext")
    raw = _HEXCHAR.sub(lambda m: chr(int(m.group(1), 16)), text)
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise InvalidArgument("xtext that is not UTF-8") from None

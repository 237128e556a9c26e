"""The sendmail(8) command line as Postfix's sendmail reads it: argv in, ``Options`` out (no I/O).

Option letters and which of them take a value are Postfix's (``A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:
p:r:q:tvx``), parsed as getopt does: flags bundle (``-ti``, ``-tif a@b``), a value is the rest of the
argument or the next one (``-oi`` = ``-o i``), and option processing stops at ``--`` or at the first
argument that is not an option, so an address can never be read as an option. Standard library only:
``spoolerd-sendmail`` runs once per mail and must start fast.
"""

from __future__ import annotations

import os

from .wiretext import has_control

TYPE_CHECKING = False  # neither typing, enum nor dataclasses (which imports inspect) at run time: a
if TYPE_CHECKING:  # sendmail command's start-up is most of its time (bench/sendmail.py)
    from collections.abc import Sequence
    from typing import ClassVar

__all__ = [
    "EX_CONFIG",
    "EX_DATAERR",
    "EX_NOINPUT",
    "EX_NOPERM",
    "EX_OK",
    "EX_SOFTWARE",
    "EX_TEMPFAIL",
    "EX_UNAVAILABLE",
    "EX_USAGE",
    "USAGE",
    "Mode",
    "Options",
    "UsageError",
    "parse_args",
]

# sysexits(3)
EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_UNAVAILABLE, EX_SOFTWARE, EX_TEMPFAIL = 0, 64, 65, 66, 69, 70, 75
EX_NOPERM, EX_CONFIG = 77, 78  # 77: this user may not reach the daemon's socket

USAGE = """\
usage: spoolerd-sendmail [options] [--] [recipient ...] < message
       mailq, or spoolerd-sendmail -bp      list the queue
       spoolerd-sendmail -q [-v]            flush the queue (-qIid: one message, -qRsite: one domain)
       newaliases, or spoolerd-sendmail -bi aliases come from the [aliases] config section
       spoolerd-sendmail -bv address ...    how each address would be routed (nothing is sent)

  -t                 recipients from To, Cc and Bcc (Bcc is removed), added to the arguments
  -i, -oi            a line with a lone "." does not end the message
  -f ADDR, -r ADDR   envelope sender ("" or "<>": the null sender)
  -F NAME            full name for the From header added to a message that has none
  -N DSN             never, or a list of success, delay, failure (default: failure, delay):
                     never = no report at all, success = a delivery report (RFC 3461 NOTIFY)
  -R full|hdrs       a non-delivery report returns the whole message or its header (RET)
  -V ENVID           the envelope id reports quote as Original-Envelope-Id (ENVID)
  -C FILE            the configuration file (as $SPOOLERD_CONFIG)
  -v                 with -q: print the flush's counts
  -bm                deliver a message (the default)
  -bd                refused: the daemon is `spoolerd run`
  -bs                an SMTP session on standard input and output (the SMTP listener's rules)
  accepted and ignored: -B 7BIT|8BITMIME, -h N, -L label, -O opt=val,
  -o x (-oem, -odb, -odi, -oQ...), -X file, -A x, -e x, -p x, -G, -U, -c, -m, -n, -x; -I is -bi
exit codes (sysexits): 0 ok, 64 usage, 65 bad message, 66 no input, 69 unavailable, 70 internal error,
75 try again later, 78 configuration
"""


class UsageError(Exception):
    """A bad command line: exit ``code`` with this reason (64, or 65 for an address no mail can have)."""

    def __init__(self, reason: str, code: int = EX_USAGE) -> None:
        super().__init__(reason)
        self.code = code


class Mode:
    """A sendmail mode: one instance each, compared with ``is``. Not an ``enum.Enum``: importing ``enum``
    costs a sendmail command more than its round trip to the daemon (see ``spoolerd.client``)."""

    __slots__ = ("name", "value")

    DELIVER: ClassVar[Mode]
    QUEUE: ClassVar[Mode]
    FLUSH: ClassVar[Mode]
    NEWALIASES: ClassVar[Mode]
    VERIFY: ClassVar[Mode]
    DAEMON: ClassVar[Mode]
    SMTP: ClassVar[Mode]
    IGNORE: ClassVar[Mode]  # -bh/-bH: Postfix keeps no host status: nothing to do
    HELP: ClassVar[Mode]

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value  # the option that selects it

    def __repr__(self) -> str:
        return f"Mode.{self.name}"


Mode.DELIVER = Mode("DELIVER", "-bm")
Mode.QUEUE = Mode("QUEUE", "-bp")
Mode.FLUSH = Mode("FLUSH", "-q")
Mode.NEWALIASES = Mode("NEWALIASES", "-bi")
Mode.VERIFY = Mode("VERIFY", "-bv")
Mode.DAEMON = Mode("DAEMON", "-bd")
Mode.SMTP = Mode("SMTP", "-bs")
Mode.IGNORE = Mode("IGNORE", "-bh")
Mode.HELP = Mode("HELP", "--help")


_B_MODES = {
    "m": Mode.DELIVER,
    "p": Mode.QUEUE,
    "i": Mode.NEWALIASES,
    "v": Mode.VERIFY,
    "d": Mode.DAEMON,
    "l": Mode.DAEMON,
    "s": Mode.SMTP,
    "h": Mode.IGNORE,
    "H": Mode.IGNORE,
}
_BY_NAME = {"mailq": Mode.QUEUE, "newaliases": Mode.NEWALIASES}  # argv[0], as Postfix's links
_WITH_VALUE = frozenset("ABCFLNORVXbefhopqr")
_FLAGS = frozenset("GIUcimntvx")
_NOTIFY = frozenset({"success", "delay", "failure"})


def undecodable(value: str) -> bool:
    """Bytes that are not UTF-8 in an argument (Python hands them over as lone surrogates)."""
    return any("\udc80" <= ch <= "\udcff" for ch in value)


class Options:
    """The command line, read. A named record written out rather than a dataclass: importing
    ``dataclasses`` (and with it ``inspect``) would be a sixth of a sendmail command's start-up."""

    __slots__ = ("config", "dot_ends", "dr", "envid", "flush_ids", "flush_site", "from_headers", "full_name",
                 "mode", "ndr", "notify", "recipients", "ret", "sender", "verbose")  # fmt: skip

    def __init__(self, mode: Mode = Mode.DELIVER) -> None:
        self.mode = mode
        self.from_headers = False  # -t
        self.dot_ends = True  # without -i/-oi a line with a lone "." ends the message
        self.sender: str | None = None  # -f / -r
        self.full_name: str | None = None  # -F
        self.recipients: list[str] = []  # or, with -bv, the addresses to verify
        self.config: str | None = None  # -C
        self.ndr: bool | None = None  # -N: None leaves the report requests at their defaults
        self.dr: bool | None = None
        self.notify: str | None = None  # -N as RFC 3461 NOTIFY: "never" or "success,failure,delay"
        self.ret: str | None = None  # -R: "full" or "hdrs"
        self.envid: str | None = None  # -V
        self.flush_ids: list[str] = []  # -qI
        self.flush_site: str | None = None  # -qR
        self.verbose = False  # -v: a flush prints its counts

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Options({fields})"

    def report_requests(self) -> dict[str, bool | str]:
        """The control socket's submit arguments for reports that -N, -R and -V set (``ndr``/``dr`` and
        ``notify`` from -N, ``ret``, ``envid``); none of them without those options."""
        asked: dict[str, bool | str] = {}
        if self.ndr is not None and self.dr is not None and self.notify is not None:
            asked.update(ndr=self.ndr, dr=self.dr, notify=self.notify)
        if self.ret is not None:
            asked["ret"] = self.ret
        if self.envid is not None:
            asked["envid"] = self.envid
        return asked


def _notify(value: str) -> tuple[bool, bool]:
    """-N as RFC 3461's NOTIFY: (a non-delivery report wanted, a delivery report wanted)."""
    words = {w.strip().lower() for w in value.split(",")}
    if words == {"never"}:
        return False, False
    if not words <= _NOTIFY:
        raise UsageError(f"-N {value!r}: give never, or a comma-separated list of success, delay, failure")
    return "failure" in words, "success" in words


def _apply(opts: Options, letter: str, value: str) -> None:
    """One option that takes a value."""
    code = EX_DATAERR if letter in "fr" else EX_USAGE  # an address: bad data, as in a header (README)
    if has_control(value):
        raise UsageError(f"-{letter} {value!r} contains control characters", code)
    if undecodable(value):
        raise UsageError(f"-{letter} {_shown(value)} is not UTF-8 text", code)
    if letter in "fr":
        opts.sender = "" if value in ("", "<>") else value  # "" and <> are the null sender
    elif letter == "F":
        opts.full_name = value
    elif letter == "C":
        opts.config = value
    elif letter == "N":
        opts.ndr, opts.dr = _notify(value)
        opts.notify = ",".join(sorted({w.strip().lower() for w in value.split(",")}))
    elif letter == "b":
        mode = _B_MODES.get(value)
        if mode is None:
            raise UsageError(f"mode -b{_printable(value)} is not supported (see --help)")
        opts.mode = mode
    elif letter == "o":
        if value[:1] == "i":
            opts.dot_ends = False
        elif value == "A":
            raise UsageError("-oA needs an alias database path")
    elif letter == "q":
        _flush(opts, value)
    elif letter == "B" and value.upper() not in ("7BIT", "8BITMIME"):
        raise UsageError(f"-B {value!r}: the body type is 7BIT or 8BITMIME")
    elif letter == "R":
        if value.lower() not in ("full", "hdrs"):
            raise UsageError(f"-R {value!r}: give full or hdrs")
        opts.ret = value.lower()
    elif letter == "V":
        if not value or len(value) > 100 or not (value.isascii() and value.isprintable()):
            raise UsageError("-V: the envelope id is 1 to 100 printable ASCII characters")
        opts.envid = value
    # the rest is accepted and ignored, as Postfix does: -A, -L, -O, -X, -e, -h, -p


def _flush(opts: Options, value: str) -> None:
    """-qI<id>, -qR<site>, or -q<interval> (one flush now: spoolerd runs its queue on its own)."""
    opts.mode = Mode.FLUSH
    kind, rest = value[:1], value[1:]
    if kind == "I":
        if not rest:
            raise UsageError("-qI needs a queue id: -qIid")
        opts.flush_ids.append(rest)
    elif kind == "R":
        if not rest:
            raise UsageError("-qR needs a site: -qRexample.org")
        opts.flush_site = rest
    elif not kind.isdigit():
        raise UsageError(f"-q{_printable(kind)} is not supported (-q, -qIid, -qRsite or -q<interval>)")


def _check(opts: Options) -> None:
    """Postfix's conflicts between a mode and the other arguments."""
    if opts.mode is Mode.HELP:
        return
    if opts.from_headers and opts.mode is not Mode.DELIVER:
        raise UsageError(f"-t can be used only in delivery mode, not with {opts.mode.value}")
    if opts.mode is Mode.VERIFY:
        if opts.ndr is not None:
            raise UsageError("-N cannot be used with -bv")
        if not opts.recipients:
            raise UsageError("-bv needs the addresses to verify")
    elif opts.mode is not Mode.DELIVER and opts.recipients:
        raise UsageError(f"{opts.mode.value} takes no recipients (got {opts.recipients[0]!r})")
    for r in opts.recipients:
        if has_control(r):
            raise UsageError(f"recipient {r!r} contains control characters", EX_DATAERR)
        if undecodable(r):
            raise UsageError(f"recipient {_shown(r)} is not UTF-8 text", EX_DATAERR)


def _shown(value: str) -> str:
    """An argument as a terminal can show it: the bytes that are not UTF-8 as \\xNN, and what is not
    printable (a C1 control, a bidi override) escaped as ``repr`` would."""
    return f"'{_printable(value)}'"


def _printable(value: str) -> str:
    """``value`` safe for a terminal: bytes that are not UTF-8 as \\xNN, unprintable characters (ESC, a
    C1 control, a bidi override) escaped as ``repr`` would; printable text as it is."""
    text = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text if text.isprintable() else "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def parse_args(argv: Sequence[str], prog: str = "sendmail") -> Options:
    """Parse ``argv`` (without the program name); ``prog`` is argv[0]: ``mailq`` and ``newaliases``
    start in their modes, which options may still change (as with Postfix)."""
    opts = Options(mode=_BY_NAME.get(os.path.basename(prog), Mode.DELIVER))
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break  # the recipients begin
        i += 1
        if arg == "--help":
            opts.mode = Mode.HELP
            continue
        if arg.startswith("--"):
            raise UsageError(f"unknown option {_printable(arg)}")
        if arg == "-q":  # not getopt-compatible: -q alone takes no value
            opts.mode = Mode.FLUSH
            continue
        for j, letter in enumerate(arg[1:], start=2):
            if letter in _FLAGS:
                if letter == "t":
                    opts.from_headers = True
                elif letter == "i":
                    opts.dot_ends = False
                elif letter == "I":
                    opts.mode = Mode.NEWALIASES
                elif letter == "v":
                    opts.verbose = True
                continue  # -G -U -c -m -n -x: accepted and ignored
            if letter not in _WITH_VALUE:
                where = f" (in {_printable(arg)})" if len(arg) > 2 else ""
                raise UsageError(f"unknown option -{_printable(letter)}{where}")
            value = arg[j:]
            if not value:
                if i >= len(args):
                    raise UsageError(f"-{letter} needs an argument")
                value = args[i]
                i += 1
            _apply(opts, letter, value)
            break
    opts.recipients = args[i:]
    _check(opts)
    return opts

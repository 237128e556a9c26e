"""structlog, set up once per process: console or JSON lines on stderr, secrets never printed."""

from __future__ import annotations

import functools
import logging
import os
import sys
from _socket import AF_UNIX, SOCK_DGRAM
from _socket import socket as _socket
from collections.abc import MutableMapping
from typing import Any

import structlog

from . import maillog
from .config import LogConfig
from .maillog import console_text
from .wiretext import printable

__all__ = [
    "SECRET_KEYS",
    "ConsoleLines",
    "MailLines",
    "SyslogStream",
    "configure_logging",
    "log_as_worker",
    "mail_lines",
    "redact_secrets",
]

SECRET_KEYS = frozenset({"password", "passwd", "secret", "token", "access_token", "authorization", "auth"})

_PROCESS_KEYS: dict[str, Any] = {}  # what each line of this process carries: a delivery worker's number


def log_as_worker(worker: int) -> None:
    """This process is delivery worker ``worker`` (spoolerd/workers.py): every line it writes says so
    (``worker=K``; JSON ``"worker": K``). structlog's lines take it from the context; the console's mail
    lines, which skip structlog's chain (``MailLines``), from here."""
    structlog.contextvars.bind_contextvars(worker=worker)
    _PROCESS_KEYS["worker"] = worker


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of any key that looks like a credential, however a caller spelled it."""
    for key in event_dict:
        if _secret(key):
            event_dict[key] = "***"
    return event_dict


@functools.lru_cache(maxsize=1024)
def _secret(key: str) -> bool:
    """Decided once per key name: the code's names are few, and every log line asks for each of its keys."""
    lower = key.lower()
    return lower in SECRET_KEYS or lower.endswith(("_password", "_secret", "_token"))


def mail_lines(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Console format: a mail line (``maillog``) reads as Postfix writes it, its keys in the text."""
    text = console_text(event_dict)
    return event_dict if text is None else _mail_line(event_dict, text)


def _mail_line(event_dict: MutableMapping[str, Any], text: str) -> MutableMapping[str, Any]:
    """A mail line as the console shows it: its text, with only the time and level beside it."""
    return {"timestamp": event_dict.get("timestamp"), "level": event_dict.get("level"), "event": text}


class ConsoleLines:
    """The console renderer: a mail line straight to ``TIMESTAMP [level    ] text`` (what structlog's
    ConsoleRenderer makes of it without colours: one or five a message, they are most of the log, and
    the renderer's generic work cost a fifth of the delivering thread's CPU), anything else, and every
    line in colour, through the ConsoleRenderer."""

    def __init__(self, *, colors: bool) -> None:
        self._colors = colors
        self._renderer = structlog.dev.ConsoleRenderer(colors=colors)

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        text = console_text(event_dict)
        if text is None:
            return str(self._renderer(logger, method, event_dict))
        if self._colors:
            return str(self._renderer(logger, method, _mail_line(event_dict, text)))
        return f"{event_dict.get('timestamp')} [{event_dict.get('level', ''):<{_LEVEL_WIDTH}}] {text}"


_LEVEL_WIDTH = 9  # the ConsoleRenderer's column for levels: its longest name, "exception"
_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
}


class MailLines:
    """The console's mail lines (``maillog``) written straight to the stream, as ``ConsoleLines`` makes
    them: structlog's generic chain around the same text cost 8 us a line, and a message has one to six
    (a tenth of the event loop's time under SMTP intake). Context variables and redaction change nothing
    in such a line (the console shows a mail line's text alone, and no mail line carries a secret) but a
    worker's number, which it takes from ``log_as_worker``. A
    line it does not write (not a mail line, an unknown level, or structlog configured otherwise since,
    as ``structlog.testing.capture_logs`` does) is left to structlog."""

    def __init__(self, stream: Any, min_level: int, stamper: Any, processors: Any) -> None:
        self._stream = stream
        self._min_level = min_level
        self._stamper = stamper  # the chain's own TimeStamper: one format for every line
        self._chain = tuple(processors)  # what it stands in for, while structlog's chain is this one

    def __call__(self, level: int, event: str, keys: Any) -> bool:
        if tuple(structlog.get_config()["processors"]) != self._chain:  # capture_logs changes it in place
            return False
        if level < self._min_level:
            return True  # filtered, as the bound logger would
        name = _LEVEL_NAMES.get(level)
        text = console_text({"event": event, **keys, **_PROCESS_KEYS}) if name is not None else None
        if text is None:
            return False
        stamp = self._stamper(None, name, {})["timestamp"]
        self._stream.write(f"{stamp} [{name:<{_LEVEL_WIDTH}}] {text}\n")  # one write: a line whole
        self._stream.flush()
        return True


class _LibraryLines(logging.Handler):
    """The libraries' log records (aiosmtpd, asyncpg, aiosmtplib log through ``logging``) as the
    daemon's own lines: the same format (a JSON log stays JSON), a ``logger`` key, secrets redacted, one
    write each to stderr as it is now. Without it Python's last-resort handler printed their warnings
    raw on stderr."""

    def __init__(self, level: int, stream: Any) -> None:
        super().__init__(level)
        self._stream = stream  # None: stderr as it is at each record

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr if self._stream is None else self._stream
        try:
            stream.write(self.format(record) + "\n")  # one write: a line whole
            stream.flush()
        except Exception:
            self.handleError(record)


# aiosmtpd's own notice at each successful AUTH (it sets its deprecated ``Session.login_data`` itself)
_NOT_OURS = ("Session.login_data is deprecated",)


def _printable_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A library's message may quote a peer (aiosmtpd: ``%r unrecognised: %s``): its control characters
    (an escape sequence for the terminal, a lone CR) shown as ``?``."""
    event_dict["event"] = printable(str(event_dict.get("event", "")))
    return event_dict


def _ours(record: logging.LogRecord) -> bool:
    """Not aiosmtpd's notice of its own deprecated attribute; a record whose message cannot be made (a
    library's mismatched ``%`` arguments) is let through for the formatter, never raised into its call."""
    try:
        return not record.getMessage().startswith(_NOT_OURS)
    except Exception:
        return True


def _library_lines(stamper: Any, renderer: Any, level: int, stream: Any) -> None:
    """Route the libraries' records at ``level`` and above through the daemon's renderer, a traceback
    shown as the daemon's own are (their ``extra`` keys are left out: a library's could overwrite ours or
    nest a secret)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _LibraryLines)]:
        root.removeHandler(old)  # configured again (a test, a reload)
    handler = _LibraryLines(level, stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                stamper,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _printable_event,
                redact_secrets,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    handler.addFilter(_ours)
    root.addHandler(handler)
    root.setLevel(level)


_MAIL_INFO = 2 * 8 + 6  # syslog's facility mail (2) at level info (6)


class SyslogStream:
    """A text stream whose lines go to the syslog socket at ``address`` (facility mail, level info, each
    line tagged ``ident[pid]``), as Postfix's commands log: for a command whose stderr nobody reads but
    cron, which mails whatever a job writes there. A line that cannot be sent (no syslog here, or
    ``address`` empty) is dropped, as syslog(3) drops it."""

    def __init__(self, address: str, ident: str) -> None:
        self._address = address
        self._tag = f"<{_MAIL_INFO}>{ident}[{os.getpid()}]: ".encode()
        self._sock: _socket | None = None

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line and self._address:
                self._send(self._tag + line.encode("utf-8", "replace"))
        return len(text)

    def _send(self, datagram: bytes) -> None:
        try:
            if self._sock is None:
                sock = _socket(AF_UNIX, SOCK_DGRAM)
                try:
                    sock.connect(self._address)
                except OSError:
                    sock.close()
                    raise
                self._sock = sock
            self._sock.send(datagram)
        except OSError:
            pass

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def configure_logging(config: LogConfig, stream: Any = None) -> None:
    """``stream``: where the lines go (default: stderr)."""
    out = sys.stderr if stream is None else stream
    console = config.format != "json"
    colors = out.isatty()
    renderer: Any = ConsoleLines(colors=colors) if console else structlog.processors.JSONRenderer()
    stamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        stamper,
        redact_secrets,
        structlog.processors.format_exc_info,
        renderer,
    ]
    min_level = getattr(logging, config.level.upper())
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        # one write per line (print would write the line and its newline apart): a delivery worker
        # shares the daemon's stderr, and a line must never be cut by another process's
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    _library_lines(stamper, renderer, max(logging.WARNING, min_level), stream)
    direct = console and not colors  # coloured lines go through the ConsoleRenderer
    maillog.direct_writer(MailLines(out, min_level, stamper, processors) if direct else None)

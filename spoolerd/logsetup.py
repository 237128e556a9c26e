"""structlog, set up once per process: console or JSON lines on stderr, secrets never printed."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from .config import LogConfig

__all__ = ["SECRET_KEYS", "configure_logging", "redact_secrets"]

SECRET_KEYS = frozenset({"password", "passwd", "secret", "token", "access_token", "authorization", "auth"})


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of any key that looks like a credential, however a caller spelled it."""
    for key in event_dict:
        if key.lower() in SECRET_KEYS or key.lower().endswith(("_password", "_secret", "_token")):
            event_dict[key] = "***"
    return event_dict


def configure_logging(config: LogConfig) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if config.format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, config.level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )

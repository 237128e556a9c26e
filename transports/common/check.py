"""The check a network transport offers (``check()``, called by ``spoolerd check-config``, by ``run`` before
anything starts, and by a reload): its secrets resolve and its TLS files load."""

from __future__ import annotations

import ssl

from spoolerd.errors import ConfigError

from .credentials import Credentials
from .tls import TlsFiles, client_context

__all__ = ["checked_tls"]


def checked_tls(credentials: Credentials, tls: TlsFiles | None) -> ssl.SSLContext | None:
    """Check the credentials and build the TLS context (``tls`` None: no TLS), reporting every problem
    of both at once; the context is what the transport then uses."""
    problems: list[str] = []
    try:
        credentials.check()
    except ConfigError as exc:
        problems.extend(exc.problems)
    context = None
    if tls is not None:
        try:
            context = client_context(tls)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return context

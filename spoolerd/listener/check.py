"""What a listener needs from files, loaded once: its TLS certificate and key, its credentials. The
listener builds its context from ``tls_context``; ``check-config``, ``run`` and a reload call
``listener_problems`` before anything starts, so a bad certificate is a config error naming the key, not
a failure at the first STARTTLS."""

from __future__ import annotations

import ssl
from pathlib import Path

from ..errors import ConfigError
from ..listener_config import ListenerSection
from .credentials import load_credentials

__all__ = ["listener_problems", "tls_context"]


def tls_context(settings: ListenerSection) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    assert settings.cert_file is not None and settings.key_file is not None  # the model checks it
    context.load_cert_chain(settings.cert_file, settings.key_file)
    return context


def listener_problems(name: str, settings: ListenerSection) -> list[str]:
    """``key: problem`` lines for the listener ``name``; none of them quotes a key or a hash."""
    problems = []
    if settings.tls != "none":
        unreadable = [
            f"listeners.{name}.{key}: cannot read {path}: {exc.strerror or exc}"
            for key, path in (("cert_file", settings.cert_file), ("key_file", settings.key_file))
            if path is not None and (exc := _unreadable(path)) is not None
        ]
        problems += unreadable
        if not unreadable:
            try:
                tls_context(settings)
            except (OSError, ssl.SSLError) as exc:
                reason = (exc.reason if isinstance(exc, ssl.SSLError) else None) or exc.strerror or str(exc)
                problems.append(
                    f"listeners.{name}.cert_file: cannot load {settings.cert_file} with key"
                    f" {settings.key_file}: {reason}"
                )
    if settings.credentials_file is not None:
        try:
            load_credentials(settings.credentials_file, f"listeners.{name}.credentials_file")
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems


def _unreadable(path: Path) -> OSError | None:
    try:
        with path.open("rb"):
            return None
    except OSError as exc:
        return exc

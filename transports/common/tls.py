"""Client TLS settings shared by the network transports, and the context built from them once at start.
Certificates are verified by default; a CA file replaces the system's trust store."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field, model_validator

from spoolerd.errors import ConfigError

__all__ = ["TlsFiles", "check_host", "client_context"]


def check_host(host: str) -> str:
    """A ``host`` settings key: a name or address, nothing that could split a line or an argument."""
    if not host or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in host):
        raise ValueError("must be a host name or address without spaces or control characters")
    return host


class TlsFiles(BaseModel):
    verify: bool = Field(True, description="check the server's certificate and host name")
    ca_file: Path | None = Field(None, description="CA bundle to trust instead of the system's")
    client_cert: Path | None = Field(None, description="client certificate (PEM), for servers that ask")
    client_key: Path | None = Field(None, description="its key, if not in client_cert")

    @model_validator(mode="after")
    def _key_needs_cert(self) -> Self:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        return self


def client_context(settings: TlsFiles) -> ssl.SSLContext:
    """The client TLS context; a missing, unreadable or bad CA or certificate file is a config error
    naming its key."""
    problems = []
    for key in ("ca_file", "client_cert", "client_key"):
        path: Path | None = getattr(settings, key)
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            problems.append(f"{key}: cannot read {path}: {exc.strerror or type(exc).__name__}")
    if problems:
        raise ConfigError(problems)
    try:
        context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"ca_file: {settings.ca_file} holds no usable CA certificate: {exc}"]) from exc
    if settings.client_cert is not None:
        try:
            context.load_cert_chain(
                str(settings.client_cert), str(settings.client_key) if settings.client_key else None
            )
        except (OSError, ssl.SSLError) as exc:
            problem = f"client_cert: {settings.client_cert} (with its key) is unusable: {exc}"
            raise ConfigError([problem]) from exc
    if not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context

"""``[transports.NAME]`` keys of a transport with ``provider = "smtp"``: one relay (a smarthost).

Timeouts default to RFC 5321 §4.5.3.2's minimums (5 minutes for the greeting and each command, 10 for
the end of DATA). Secrets are named here only by where they live (a file, an environment variable, a
command), so the configuration itself holds none and nothing logs one.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["HELO_NAME", "AuthMethod", "SmtpSettings", "TlsMode"]

# RFC 5321 Domain or address literal, as EHLO takes it: no spaces, no control characters
HELO_NAME = re.compile(
    r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*)$"
)


class TlsMode(StrEnum):
    STARTTLS = "starttls"  # STARTTLS required: a relay that does not offer it is a temporary failure
    OPPORTUNISTIC = "opportunistic"  # STARTTLS when offered, else in clear (never with AUTH)
    IMPLICIT = "implicit"  # TLS from the first byte (submissions port 465)
    NONE = "none"


class AuthMethod(StrEnum):
    AUTO = "auto"  # PLAIN, else LOGIN, whichever the relay offers
    PLAIN = "plain"
    LOGIN = "login"
    XOAUTH2 = "xoauth2"


_DEFAULT_PORTS = {TlsMode.STARTTLS: 587, TlsMode.IMPLICIT: 465, TlsMode.OPPORTUNISTIC: 25, TlsMode.NONE: 25}


class SmtpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(description="the relay's host name or address")
    port: int | None = Field(None, ge=1, le=65535, description="default: 587, 465 (implicit TLS) or 25")
    tls: TlsMode = Field(TlsMode.STARTTLS, description="starttls, opportunistic, implicit or none")
    verify: bool = Field(True, description="check the relay's certificate and host name")
    ca_file: Path | None = Field(None, description="CA bundle to trust instead of the system's")
    client_cert: Path | None = Field(None, description="client certificate (PEM), for relays that ask")
    client_key: Path | None = Field(None, description="its key, if not in client_cert")
    username: str | None = Field(None, description="AUTH identity; no username: no AUTH")
    auth: AuthMethod = Field(AuthMethod.AUTO, description="auto, plain, login or xoauth2")
    password_file: Path | None = Field(None, description="file whose first line is the password")
    password_env: str | None = Field(None, description="environment variable holding the password")
    token_file: Path | None = Field(None, description="XOAUTH2: file holding the access token (re-read)")
    token_command: list[str] | None = Field(
        None, description="XOAUTH2: command printing a token, or JSON with access_token and expires_in"
    )
    token_lifetime: float = Field(3000.0, gt=0, description="seconds a command's plain token is reused")
    helo: str | None = Field(None, description="name sent in EHLO (default: this host's FQDN)")
    pool_size: int = Field(8, ge=1, description="connections kept open to the relay at most")
    messages_per_connection: int = Field(100, ge=1, description="then the connection is closed (QUIT)")
    destination_concurrency: int | None = Field(
        None, ge=1, description="sends at once to the relay (default spooler.destination_concurrency)"
    )
    idle_timeout: float = Field(30.0, gt=0, description="an unused connection is closed after this")
    connect_timeout: float = Field(300.0, gt=0, description="connect, TLS handshake and the greeting")
    command_timeout: float = Field(300.0, gt=0, description="each command's reply")
    data_timeout: float = Field(600.0, gt=0, description="the reply to the end of the message data")

    @field_validator("host")
    @classmethod
    def _host(cls, host: str) -> str:
        if not host or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in host):
            raise ValueError("must be a host name or address without spaces or control characters")
        return host

    @field_validator("helo")
    @classmethod
    def _helo(cls, helo: str | None) -> str | None:
        if helo is not None and not HELO_NAME.match(helo):
            raise ValueError(f"{helo!r} is neither a domain name nor an address literal")
        return helo

    @field_validator("username")
    @classmethod
    def _username(cls, username: str | None) -> str | None:
        if username is not None and (not username or any(ord(c) < 0x20 or ord(c) == 0x7F for c in username)):
            raise ValueError("must be non-empty and free of control characters")
        return username

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give password_file or password_env, not both")
        if self.token_file is not None and self.token_command is not None:
            raise ValueError("give token_file or token_command, not both")
        if self.token_command is not None and not self.token_command:
            raise ValueError("token_command: give the command and its arguments as a list")
        has_password = self.password_file is not None or self.password_env is not None
        has_token = self.token_file is not None or self.token_command is not None
        if self.username is not None:
            if self.auth is AuthMethod.XOAUTH2 and not has_token:
                raise ValueError("auth = xoauth2 needs token_file or token_command")
            if self.auth is not AuthMethod.XOAUTH2 and not has_password:
                raise ValueError("username is set: give password_file or password_env")
        elif has_password or has_token:
            raise ValueError("a password or token is configured but no username")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        return self

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else _DEFAULT_PORTS[self.tls]

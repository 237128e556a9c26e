"""``[transports.NAME]`` keys of a transport with ``provider = "smtp"``: one relay (a smarthost).

Timeouts default to RFC 5321 §4.5.3.2's minimums (5 minutes for the greeting and each command, 10 for
the end of DATA). Secrets are named here only by where they live (a file, an environment variable, a
command), so the configuration itself holds none and nothing logs one.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from transports.common.credentials import SecretSources
from transports.common.tls import TlsFiles, check_host

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


class SmtpSettings(SecretSources, TlsFiles):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(description="the relay's host name or address")
    port: int | None = Field(None, ge=1, le=65535, description="default: 587, 465 (implicit TLS) or 25")
    tls: TlsMode = Field(TlsMode.STARTTLS, description="starttls, opportunistic, implicit or none")
    auth: AuthMethod = Field(AuthMethod.AUTO, description="auto, plain, login or xoauth2")
    helo: str | None = Field(None, description="name sent in EHLO (default: this host's FQDN)")
    pool_size: int = Field(8, ge=1, description="connections kept open to the relay at most")
    messages_per_connection: int = Field(100, ge=1, description="then the connection is closed (QUIT)")
    recipients_per_transaction: int = Field(
        50, ge=1, description="RCPT TOs in one transaction at most; more go in the next (Postfix: 50)"
    )
    destination_concurrency: int | None = Field(
        None, ge=1, description="sends at once to the relay (default spooler.destination_concurrency)"
    )
    idle_timeout: float = Field(30.0, gt=0, description="an unused connection is closed after this")
    connect_timeout: float = Field(300.0, gt=0, description="connect, TLS handshake and the greeting")
    command_timeout: float = Field(300.0, gt=0, description="each command's reply")
    data_timeout: float = Field(600.0, gt=0, description="the reply to the end of the message data")

    _host = field_validator("host")(check_host)

    @field_validator("helo")
    @classmethod
    def _helo(cls, helo: str | None) -> str | None:
        if helo is not None and not HELO_NAME.match(helo):
            raise ValueError(f"{helo!r} is neither a domain name nor an address literal")
        return helo

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.username is not None:
            if self.auth is AuthMethod.XOAUTH2 and not self.has_token:
                raise ValueError("auth = xoauth2 needs token_file or token_command")
            if self.auth is not AuthMethod.XOAUTH2 and not self.has_password:
                raise ValueError("username is set: give password_file or password_env")
        return self

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else _DEFAULT_PORTS[self.tls]

"""``[listeners.NAME]``: an SMTP listener's settings (DESIGN §8), validated with the rest of the config.

The embedded default has no listener. Security defaults: loopback clients only may relay without
authenticating (``allowed_networks``), and AUTH is offered only over TLS unless the listener listens on a
loopback address alone.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["ListenerSection", "is_loopback", "split_address"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets: ``[::1]:2525``) as (host, port); ValueError names the problem."""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port (IPv6 in brackets: [::1]:2525)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)  # a ValueError names it
    elif ":" in host or not host:
        raise ValueError(f"{address!r}: an IPv6 host goes in brackets, e.g. [::1]:2525")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (an address, or the name localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ListenerSection(BaseModel):
    """An SMTP listener: applications that speak SMTP submit into a store through it."""

    model_config = ConfigDict(extra="forbid")

    address: str = Field(description='where to listen, "host:port" (IPv6 in brackets: "[::1]:2525")')
    store: str | None = Field(None, description="the store messages go into (default: spooler.default_store)")
    tls: Literal["none", "starttls", "implicit"] = Field(
        "none", description="none, starttls (offered, RFC 3207) or implicit (TLS from the first byte)"
    )
    cert_file: Path | None = Field(None, description="PEM certificate chain (needed for tls)")
    key_file: Path | None = Field(None, description="PEM private key (needed for tls)")
    auth: Literal["none", "required"] = Field(
        "none",
        description="required: MAIL is refused until the client authenticated (AUTH PLAIN/LOGIN);"
        " none: AUTH is still offered when credentials_file is set",
    )
    credentials_file: Path | None = Field(
        None, description="user:scrypt$... lines (python -m spoolerd.listener.credentials USER makes one)"
    )
    allowed_networks: list[Network] = Field(
        default_factory=lambda: [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")],
        description="clients that may send without authenticating (default: loopback only); others"
        " are refused at RCPT until they authenticate",
    )
    max_connections: int = Field(100, ge=1, description="sessions at once; more are answered 421 4.7.0")
    max_recipients: int = Field(1000, ge=1, description="recipients per message; more get 452 4.5.3")
    command_timeout: float = Field(300.0, gt=0, description="seconds to wait for a command (RFC 5321: 5 min)")
    data_timeout: float = Field(600.0, gt=0, description="seconds a whole DATA transfer may take")
    hostname: str | None = Field(None, description="name in the greeting and Received (default: FQDN)")

    @field_validator("address")
    @classmethod
    def _address(cls, address: str) -> str:
        split_address(address)
        return address

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, list):
            return [ipaddress.ip_network(v, strict=False) if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ListenerSection:
        if self.tls != "none" and (self.cert_file is None or self.key_file is None):
            raise ValueError(f"tls = {self.tls!r} needs cert_file and key_file")
        if self.auth == "required" and self.credentials_file is None:
            raise ValueError('auth = "required" needs credentials_file')
        if self.credentials_file is not None and self.tls == "none" and not self.loopback_only:
            # AUTH only over TLS: aiosmtpd would offer it in clear to any client (found by a first-day trial)
            raise ValueError("credentials_file on a non-loopback address needs tls (AUTH only over TLS)")
        return self

    @property
    def loopback_only(self) -> bool:
        return is_loopback(split_address(self.address)[0])

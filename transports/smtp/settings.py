"""``[transports.NAME]`` keys of a transport with ``provider = "smtp"``: one relay (a smarthost), or an
ordered list of relays to fail over between (``hosts``, each ``name``, ``name:port`` or ``[v6]:port``).

Timeouts default to RFC 5321 §4.5.3.2's minimums (5 minutes for the greeting and each command, 10 for
the end of DATA). Secrets are named here only by where they live (a file, an environment variable, a
command), so the configuration itself holds none and nothing logs one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from spoolerd.rate import Rate, parse_rate
from transports.common.credentials import SecretSources
from transports.common.tls import TlsFiles, check_host

__all__ = ["HELO_NAME", "AuthMethod", "RelayAddress", "SmtpSettings", "TlsMode", "parse_relay"]

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


@dataclass(frozen=True, slots=True)
class RelayAddress:
    host: str
    port: int

    @property
    def peer(self) -> str:
        """``host:port`` as logs and diagnostics name the relay (an IPv6 address in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_BRACKETED = re.compile(r"^\[(?P<host>[0-9A-Fa-f:.]+)\](?::(?P<port>\d{1,5}))?$")


def parse_relay(text: str, default_port: int) -> RelayAddress:
    """``name``, ``name:port``, ``[address]`` or ``[address]:port``; a bare IPv6 address is taken whole."""
    check_host(text)
    host, port = text, ""
    if text.startswith("["):
        found = _BRACKETED.match(text)
        if found is None:
            raise ValueError(f"{text!r} is not [address] or [address]:port")
        host, port = found.group("host"), found.group("port") or ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{text!r} is not host or host:port")
    if not port:
        return RelayAddress(host, default_port)
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: a port is between 1 and 65535")
    return RelayAddress(host, int(port))


class SmtpSettings(SecretSources, TlsFiles):
    model_config = ConfigDict(extra="forbid")

    hosts: list[str] | None = Field(
        None,
        description='relays tried in order ("name", "name:port", "[v6]:port"): one that is down is '
        "skipped for destination_hold (instead of host)",
    )
    host: str | None = Field(
        None, validate_default=True, description="the relay's host name or address (one relay)"
    )
    port: int | None = Field(
        None, ge=1, le=65535, description="default: 587, 465 (implicit TLS) or 25; also for hosts without one"
    )
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
    relay_rates: dict[str, Annotated[Rate, BeforeValidator(parse_rate)]] = Field(
        default_factory=dict,
        description="sends per period to a relay at most, by relay as in host/hosts, e.g. "
        '{ "b.example.org:587" = "10/1m" }: a relay whose budget is spent is passed over',
    )
    idle_timeout: float = Field(30.0, gt=0, description="an unused connection is closed after this")
    connect_timeout: float = Field(300.0, gt=0, description="connect, TLS handshake and the greeting")
    command_timeout: float = Field(300.0, gt=0, description="each command's reply")
    data_timeout: float = Field(600.0, gt=0, description="the reply to the end of the message data")

    @field_validator("host")
    @classmethod
    def _host(cls, host: str | None, info: ValidationInfo) -> str | None:
        if "hosts" not in info.data:  # hosts was given but is wrong: that is the error to show
            return host if host is None else check_host(host)
        hosts = info.data["hosts"]
        if host is None and hosts is None:
            raise ValueError("Field required (the relay; or hosts, a list of relays to fail over between)")
        if host is not None and hosts is not None:
            raise ValueError("give either host (one relay) or hosts (relays to fail over between), not both")
        return host if host is None else check_host(host)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[str] | None) -> list[str] | None:
        if hosts is not None:
            if not hosts:
                raise ValueError("name at least one relay")
            for host in hosts:
                parse_relay(host, 25)
        return hosts

    @field_validator("relay_rates")
    @classmethod
    def _relay_rates(cls, rates: dict[str, Rate], info: ValidationInfo) -> dict[str, Rate]:
        """Each key names one of the relays (its port as the relay's, the default port if neither has)."""
        if not rates or not {"hosts", "host", "port", "tls"} <= info.data.keys():
            return rates  # a wrong relay list or port is the error to show
        port = info.data["port"] or _DEFAULT_PORTS[info.data["tls"]]
        named = info.data["hosts"] or [info.data["host"]]
        peers = {parse_relay(h, port).peer for h in named}
        by_peer: dict[str, Rate] = {}
        for key, rate in rates.items():
            peer = parse_relay(key, port).peer
            if peer not in peers:
                raise ValueError(f"{key!r} is not one of the relays ({', '.join(sorted(peers))})")
            if peer in by_peer:
                raise ValueError(f"{key!r}: that relay has a rate already")
            by_peer[peer] = rate
        return by_peer

    @field_validator("helo")
    @classmethod
    def _helo(cls, helo: str | None) -> str | None:
        if helo is not None and not HELO_NAME.match(helo):
            raise ValueError(f"{helo!r} is neither a domain name nor an address literal")
        return helo

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.hosts is not None:
            peers = [parse_relay(h, self.effective_port).peer for h in self.hosts]
            if len(set(peers)) < len(peers):
                raise ValueError("hosts: a relay is named twice")
        if self.username is not None:
            if self.auth is AuthMethod.XOAUTH2 and not self.has_token:
                raise ValueError("auth = xoauth2 needs token_file or token_command")
            if self.auth is not AuthMethod.XOAUTH2 and not self.has_password:
                raise ValueError("username is set: give password_file or password_env")
        return self

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else _DEFAULT_PORTS[self.tls]

    @property
    def relays(self) -> list[RelayAddress]:
        """The relays in the order they are tried."""
        if self.hosts is None:
            assert self.host is not None
            return [RelayAddress(self.host, self.effective_port)]
        return [parse_relay(h, self.effective_port) for h in self.hosts]

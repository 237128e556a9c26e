"""``[transports.NAME]`` keys of a transport with ``provider = "imap"``: one IMAP account. Several
accounts are several sections. Secrets are named only by where they live, as for SMTP."""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from spoolerd.message_class import inbound_class
from transports.common.credentials import SecretSources
from transports.common.tls import TlsFiles, check_host

from .wire import canonical_mailbox, check_mailbox

__all__ = ["AfterDownload", "AuthMethod", "ImapSettings", "TlsMode"]


class TlsMode(StrEnum):
    IMPLICIT = "implicit"  # TLS from the first byte (imaps, port 993)
    STARTTLS = "starttls"  # STARTTLS required on port 143
    NONE = "none"


class AuthMethod(StrEnum):
    LOGIN = "login"
    XOAUTH2 = "xoauth2"


class AfterDownload(StrEnum):
    """What is done on the server once a message is safely in the local store."""

    KEEP = "keep"  # leave it as it is (the UID is remembered locally)
    SEEN = "seen"  # set \\Seen
    DELETE = "delete"  # set \\Deleted and expunge it
    MOVE = "move"  # move it to ``move_to``


_DEFAULT_PORTS = {TlsMode.IMPLICIT: 993, TlsMode.STARTTLS: 143, TlsMode.NONE: 143}


class ImapSettings(SecretSources, TlsFiles):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(description="the IMAP server's host name or address")
    port: int | None = Field(None, ge=1, le=65535, description="default: 993 (implicit TLS) or 143")
    tls: TlsMode = Field(TlsMode.IMPLICIT, description="implicit, starttls or none")
    auth: AuthMethod = Field(AuthMethod.LOGIN, description="login or xoauth2")
    # download
    mailboxes: list[str] = Field(
        default_factory=lambda: ["INBOX"], description="mailboxes to download from (empty: upload only)"
    )
    store: str | None = Field(
        None, description="the local store downloads go to (default: the default store)"
    )
    message_class: str = Field(
        "IPM.Note",
        description="class of downloaded messages (picks the folder); reports, S/MIME and "
        "meeting requests get their own",
    )
    after_download: AfterDownload = Field(
        AfterDownload.KEEP, description="keep, seen, delete or move (to move_to), once stored locally"
    )
    move_to: str | None = Field(None, description="after_download = move: the mailbox to move to")
    idle: bool = Field(True, description="IDLE for push delivery, when the server offers it")
    idle_renew: float = Field(
        1500.0, ge=1, le=1740, description="seconds before IDLE is re-issued (within 29 minutes)"
    )
    poll_interval: float = Field(300.0, gt=0, description="seconds between checks without IDLE")
    fetch_batch: int = Field(50, ge=1, le=200, description="messages fetched per command")
    # upload
    upload_mailbox: str | None = Field(
        None, description="APPEND outgoing mail for this account's recipients here (none: no upload)"
    )
    address_types: list[str] = Field(
        default_factory=list, description='recipient address types uploaded (e.g. ["IMAP"])'
    )
    addresses: list[str] = Field(
        default_factory=list, description="SMTP recipients uploaded: addresses or @domains"
    )
    sent_copy: bool = Field(False, description="APPEND a copy of mail sent by other transports")
    sent_mailbox: str = Field("Sent", description="where sent_copy puts it")
    create_mailboxes: bool = Field(True, description="create an upload mailbox the server lacks")
    # timing
    connect_timeout: float = Field(60.0, gt=0, description="connect, TLS handshake, greeting and login")
    command_timeout: float = Field(120.0, gt=0, description="each command's response")
    reconnect_initial: float = Field(
        5.0, gt=0, allow_inf_nan=False, description="first wait after a network error"
    )
    reconnect_max: float = Field(
        600.0, gt=0, allow_inf_nan=False, description="longest wait between reconnects"
    )
    login_retry: float = Field(
        3600.0, gt=0, description="wait after the server refused the login (no retry loop)"
    )

    _host = field_validator("host")(check_host)

    @field_validator("mailboxes")
    @classmethod
    def _mailboxes(cls, names: list[str]) -> list[str]:
        names = [canonical_mailbox(check_mailbox(name)) for name in names]
        if len(set(names)) != len(names):
            raise ValueError("a mailbox is listed twice")
        return names

    @field_validator("move_to", "upload_mailbox", "sent_mailbox")
    @classmethod
    def _mailbox(cls, name: str | None) -> str | None:
        return None if name is None else canonical_mailbox(check_mailbox(name))

    @field_validator("message_class")
    @classmethod
    def _class(cls, message_class: str) -> str:
        return inbound_class(message_class)

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, addresses: list[str]) -> list[str]:
        for address in addresses:
            if "@" not in address or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in address):
                raise ValueError(f"{address!r} is neither an address nor an @domain")
        return addresses

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.username is None:
            raise ValueError("username is required")
        if self.auth is AuthMethod.XOAUTH2 and not self.has_token:
            raise ValueError("auth = xoauth2 needs token_file or token_command")
        if self.auth is AuthMethod.LOGIN and not self.has_password:
            raise ValueError("give password_file or password_env")
        if (self.after_download is AfterDownload.MOVE) != (self.move_to is not None):
            raise ValueError("move_to is set exactly when after_download = move")
        if self.move_to is not None and self.move_to in self.mailboxes:
            raise ValueError("move_to is one of the mailboxes downloaded from")
        if (self.address_types or self.addresses) and self.upload_mailbox is None:
            raise ValueError("address_types or addresses are set: give upload_mailbox")
        if self.upload_mailbox is not None and not (self.address_types or self.addresses):
            raise ValueError("upload_mailbox is set: give address_types or addresses to upload")
        return self

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else _DEFAULT_PORTS[self.tls]

    @property
    def peer(self) -> str:
        """``host:port``, as diagnostics name the server."""
        return f"{self.host}:{self.effective_port}"

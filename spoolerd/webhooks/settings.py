"""``[webhooks.NAME]``: where delivery events are POSTed, with which secret, and how much may wait."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import ConfigError

__all__ = ["EventKind", "WebhookSection"]


class EventKind(enum.StrEnum):
    """What became of one recipient (``delivered``, ``deferred``, ``bounced``, ``expired``: an attempt's
    recorded outcome) or that its sender was warned of a delay (``delayed``)."""

    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    EXPIRED = "expired"
    DELAYED = "delayed"


def _wire_safe(value: str, what: str) -> str:
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        raise ValueError(f"{what} has a blank, CR, LF or another control character")
    return value


class WebhookSection(BaseModel):
    """One endpoint that receives delivery events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description='"http://host:port/path" or "https://..." that events are POSTed to')
    secret_file: Path | None = Field(None, description="file whose first line is the HMAC-SHA256 secret")
    secret_env: str | None = Field(None, description="environment variable holding the secret")
    events: list[EventKind] = Field(
        default_factory=lambda: list(EventKind),
        description="which events to send: delivered, deferred, bounced, expired, delayed (all by default)",
    )
    timeout: float = Field(10.0, gt=0, allow_inf_nan=False, description="seconds one POST may take in all")
    max_backlog: int = Field(
        10_000, ge=1, description="events kept waiting per store; beyond it the oldest are dropped (logged)"
    )
    retry_initial: float = Field(1.0, gt=0, allow_inf_nan=False, description="seconds before the first retry")
    retry_maximum: float = Field(300.0, gt=0, allow_inf_nan=False, description="longest wait between retries")

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        _wire_safe(url, "the url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r}: an http:// or https:// URL with a host")
        parts.port  # noqa: B018 - a ValueError names a bad port
        if parts.username or parts.password:
            raise ValueError("no credentials in the url: the secret signs each event")
        return url

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookSection:
        if (self.secret_file is None) == (self.secret_env is None):
            raise ValueError("give secret_file or secret_env (one of them)")
        return self

    def secret(self) -> bytes:
        """The signing secret; ConfigError (``key: problem``) when it cannot be read."""
        if self.secret_env is not None:
            value = os.environ.get(self.secret_env, "")
            if not value:
                raise ConfigError([f"secret_env: the environment variable {self.secret_env} is not set"])
            return value.encode()
        assert self.secret_file is not None
        try:
            with open(self.secret_file, "rb") as f:
                line = f.readline().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError([f"secret_file: cannot read {self.secret_file}: {exc.strerror}"]) from exc
        if not line:
            raise ConfigError([f"secret_file: {self.secret_file} has no secret on its first line"])
        return line

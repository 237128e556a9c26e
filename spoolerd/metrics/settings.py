"""``[metrics]``: where the daemon serves Prometheus metrics (nowhere by default)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..listener_config import split_address

__all__ = ["MetricsSection"]


class MetricsSection(BaseModel):
    """Prometheus text format at ``http://ADDRESS/metrics``."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(
        None,
        description='serve /metrics on "host:port" (IPv6 in brackets: "[::1]:9469"); unset: no metrics.'
        " Anyone who reaches it sees queue sizes and transport names: keep it on loopback or a"
        " monitoring network",
    )

    @field_validator("address")
    @classmethod
    def _address(cls, address: str | None) -> str | None:
        if address is not None:
            split_address(address)  # a ValueError names the problem
        return address

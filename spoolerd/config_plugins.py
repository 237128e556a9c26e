"""The frame of a plugin's section of the configuration (``[stores.NAME]``, ``[transports.NAME]``): the
keys the core reads, with ``provider`` naming the entry point, and the check of the provider-specific
keys against the provider's own ``Settings`` model (``plugin_problems``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from .duration import parse_duration
from .errors import ConfigError, PluginError
from .plugins import PluginRegistry, plugin_settings
from .rate import Rate, parse_rate

__all__ = ["SENT_RETENTION", "StoreSection", "TransportSection", "plugin_problems"]


class _PluginSection(BaseModel):
    """A plugin's section: ``provider`` picks the entry point; undeclared keys belong to the provider."""

    model_config = ConfigDict(extra="allow")

    provider: str = Field(description="entry point in spoolerd.transports")

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


SENT_RETENTION = 7 * 86400.0  # a week of sent mail: enough to look back on, bounded by a week's traffic


def _retention(value: Any) -> float | None:
    if isinstance(value, str) and value.strip().lower() == "forever":
        return None
    return None if value is None else parse_duration(value)


class StoreSection(_PluginSection):
    provider: str = Field("sqlite", description="entry point in spoolerd.stores")
    addresses: list[str] = Field(default_factory=list, description="addresses (or @domains) this store owns")
    coupled_transport: str | None = Field(None, description="transport that handles its recipients at submit")
    sent_retention: Annotated[float | None, BeforeValidator(_retention)] = Field(
        SENT_RETENTION,
        description='how long a sent copy stays in Sent Items: seconds or a duration ("30d", "12h");'
        ' "forever" keeps every copy',
    )
    sent_copies: bool = Field(
        True, description="file mail that local programs submit in Sent Items once sent (false: delete it)"
    )

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, addresses: list[str]) -> list[str]:
        for address in addresses:
            _local, at, domain = address.rpartition("@")
            if not at or not domain or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in address):
                raise ValueError(f"{address!r} is neither user@domain nor @domain")
        return addresses


def _rate(value: Any) -> Rate | None:
    """A transport's ``rate``: as written (``"100/1m"``), or as a config dump reads it back."""
    if value is None:
        return None
    if isinstance(value, dict) and set(value) == {"messages", "per"}:
        return parse_rate(f"{value['messages']}/{value['per']}s")
    return parse_rate(value)


class TransportSection(_PluginSection):
    concurrency: int | None = Field(
        None, ge=1, description="sends at once (default spooler.transport_concurrency)"
    )
    rate: Annotated[Rate | None, BeforeValidator(_rate)] = Field(
        None, description='sends per period to each destination at most, e.g. "100/1m" (default: no limit)'
    )


def plugin_problems(data: dict[str, Any], registry: PluginRegistry) -> list[str]:
    """Check each ``[stores.*]`` / ``[transports.*]`` section against its provider's own model, from the
    raw TOML: lets a broken frame and broken plugin sections be reported together."""
    problems: list[str] = []
    groups: tuple[tuple[str, str | None, type[_PluginSection], Any], ...] = (
        ("stores", "sqlite", StoreSection, registry.store_provider),
        ("transports", None, TransportSection, registry.transport_provider),
    )
    for key, default_provider, frame, load in groups:
        sections = data.get(key)
        if not isinstance(sections, dict):
            continue
        for name, section in sections.items():
            if not isinstance(section, dict):
                continue
            provider = section.get("provider", default_provider)
            if not isinstance(provider, str):
                continue  # the frame reports it
            try:
                cls = load(provider)
            except PluginError as exc:
                problems.append(f"{key}.{name}.provider: {exc}")
                continue
            options = {k: v for k, v in section.items() if k not in frame.model_fields}
            try:
                plugin_settings(cls.Settings, options, f"{key}.{name}")
            except ConfigError as exc:
                problems.extend(exc.problems)
    return problems

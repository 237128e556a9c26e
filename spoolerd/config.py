"""The daemon's configuration: TOML validated by pydantic, with errors that name the key.

Every key has a default that works for one user on one machine: a SQLite store in the state directory
(``$STATE_DIRECTORY`` under systemd, else ``./spool``). Provider-specific keys of ``[stores.NAME]`` are
validated by the provider's own ``Settings`` model (see ``PluginRegistry.open_store``); this module checks
the frame around them.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError, PluginError
from .plugins import PluginRegistry, validation_problems
from .store import Clock, MessageStore, StoreContext

__all__ = [
    "Config",
    "LogConfig",
    "SpoolerSection",
    "StoreSection",
    "default_state_dir",
    "load_config",
    "open_stores",
    "parse_config",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def default_state_dir() -> Path:
    """systemd's StateDirectory= when set (first entry), else ./spool."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) if state else Path("spool")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LogConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] = "console"


class SpoolerSection(_Strict):
    state_dir: Path = Field(default_factory=default_state_dir)
    default_store: str = "local"


class StoreSection(BaseModel):
    """``[stores.NAME]``: ``provider`` picks the entry point; every other key belongs to the provider."""

    model_config = ConfigDict(extra="allow")

    provider: str = "sqlite"

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _default_stores() -> dict[str, StoreSection]:
    return {"local": StoreSection(provider="sqlite")}


class Config(_Strict):
    spooler: SpoolerSection = Field(default_factory=SpoolerSection)
    log: LogConfig = Field(default_factory=LogConfig)
    stores: dict[str, StoreSection] = Field(default_factory=_default_stores)

    @field_validator("stores")
    @classmethod
    def _store_names(cls, stores: dict[str, StoreSection]) -> dict[str, StoreSection]:
        for name in stores:
            if not _NAME.match(name):
                raise ValueError(f"store name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
        if not stores:
            raise ValueError("at least one store is needed")
        return stores


def parse_config(data: dict[str, Any], source: str | None = None) -> Config:
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, ""), source) from exc
    if config.spooler.default_store not in config.stores:
        names = ", ".join(sorted(config.stores))
        raise ConfigError(
            [f"spooler.default_store: names {config.spooler.default_store!r}, but the stores are: {names}"],
            source,
        )
    return config


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate a TOML file; ``None`` gives the embedded default."""
    if path is None:
        return Config()
    source = os.fspath(path)
    try:
        with open(source, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror or exc}"], source) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], source) from exc
    return parse_config(data, source)


@dataclass(frozen=True, slots=True)
class OpenedStores:
    stores: dict[str, MessageStore]
    default: str


def open_stores(
    config: Config, registry: PluginRegistry, *, clock: Clock | None = None, source: str | None = None
) -> OpenedStores:
    """Build every configured store (not started), collecting every problem into one ConfigError."""
    problems: list[str] = []
    stores: dict[str, MessageStore] = {}
    for name, section in config.stores.items():
        context = StoreContext(name, config.spooler.state_dir, *(() if clock is None else (clock,)))
        try:
            stores[name] = registry.open_store(section.provider, section.options(), context)
        except ConfigError as exc:
            problems.extend(exc.problems)
        except PluginError as exc:
            problems.append(f"stores.{name}.provider: {exc}")
    default = config.spooler.default_store
    if default in stores and not stores[default].can_queue:
        problems.append(
            f"spooler.default_store: store {default!r} (provider {config.stores[default].provider!r})"
            " cannot queue outgoing mail, so it cannot be the default store"
        )
    if problems:
        raise ConfigError(problems, source)
    return OpenedStores(stores, default)

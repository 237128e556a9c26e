"""The daemon's configuration: TOML validated by pydantic, with errors that name the key.

Every key has a default that works for one user on one machine: a SQLite store in the state directory
(``$STATE_DIRECTORY`` under systemd, else ``./spool``). Provider-specific keys of ``[stores.NAME]`` are
validated by the provider's own ``Settings`` model (see ``PluginRegistry.open_store``); the frame around
them is spoolerd/config_plugins.py.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from .addressing import parse_address, parse_address_list
from .config_env import ENV_PREFIX, env_overlay, merged
from .config_plugins import SENT_RETENTION, StoreSection, TransportSection, plugin_problems
from .config_spooler import RetrySection, SpoolerSection, default_state_dir
from .config_spooler import Strict as _Strict
from .errors import ConfigError, PluginError
from .listener_config import ListenerSection
from .metrics.settings import MetricsSection
from .plugins import PluginRegistry, validation_problems
from .store import Clock, MessageStore, StoreContext
from .webhooks.settings import WebhookSection

__all__ = [
    "SENT_RETENTION",
    "AddressesSection",
    "Config",
    "LogConfig",
    "RetrySection",
    "SpoolerSection",
    "StoreSection",
    "TransportSection",
    "default_state_dir",
    "load_config",
    "open_stores",
    "parse_config",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class LogConfig(_Strict):
    """Logging: structlog on stderr (journald or docker logs collect it); secrets are never printed."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="the least severe level shown"
    )
    format: Literal["console", "json"] = Field(
        "console", description="console: for people; json: one object a line"
    )
    syslog: str = Field(
        "/dev/log",
        description="where spoolerd-sendmail logs a message it queued itself (no daemon ran) when its "
        "stderr is not a terminal, as Postfix's commands log to syslog; empty: nowhere",
    )


def default_socket(state_dir: Path) -> Path:
    """systemd's RuntimeDirectory= when set, else the state directory (./spool by default)."""
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return (Path(runtime) if runtime else state_dir) / "control.sock"


def control_socket(config: Config) -> Path:
    """Where the daemon of ``config`` listens: ``[control] socket``, else its default."""
    return config.control.socket or default_socket(config.spooler.state_dir)


class ControlSection(_Strict):
    """The control socket (DESIGN §6)."""

    socket: Path | None = Field(
        None, description="Unix socket path (default: control.sock in $RUNTIME_DIRECTORY, else in state_dir)"
    )
    enabled: bool = Field(
        True, description="false: no control socket (spoolerctl and sendmail cannot connect)"
    )
    allowed_uids: list[int] = Field(
        default_factory=list,
        description="may submit, list the queue, flush it, see the status and verify (besides the admins)",
    )
    allowed_groups: list[str | int] = Field(
        default_factory=list,
        description="group names or gids whose members may do what allowed_uids may (the first owns the"
        " socket)",
    )
    admin_uids: list[int] = Field(
        default_factory=list,
        description="may also read, delete, hold and abort mail, take transports offline and reload"
        " (besides root and the daemon's own uid)",
    )
    admin_groups: list[str | int] = Field(
        default_factory=list,
        description="group names or gids whose members may do what admin_uids may (they must reach the"
        " socket: the first of allowed_groups owns it, else the first of these)",
    )
    rate: float = Field(200.0, gt=0, description="requests a second per connection")
    burst: float = Field(400.0, ge=1, description="requests in a burst per connection")
    idle_timeout: float = Field(
        60.0, gt=0, description="seconds a connection may wait between requests (a subscribe stream waits on)"
    )
    max_connections: int = Field(256, ge=1, description="connections at once, all users together")
    max_connections_per_uid: int = Field(
        32,
        ge=1,
        description="connections at once per uid; a new one over it (or over max_connections) closes"
        " that uid's (or the busiest uid's) oldest idle connection, or is refused busy when none is idle",
    )
    max_buffer: int = Field(
        4 * 1024 * 1024,
        ge=1024 * 1024,
        description="bytes held per connection: its partial request line and answers and events it has"
        " not read (a submit's body is bounded by message_size_limit); over it: buffer_full, hung up",
    )
    max_buffer_total: int = Field(
        256 * 1024 * 1024,
        ge=1024 * 1024,
        description="bytes held by all connections together, submit bodies included (at least"
        " message_size_limit is always allowed); over it the largest holders are told buffer_full, hung up",
    )


class AddressesSection(_Strict):
    """Addresses as a null client completes them (bare names, masquerading, bounce copies)."""

    default_domain: str | None = Field(
        None,
        description="appended to bare names (Postfix's myorigin); default: this host's fully qualified"
        " name, or, when no [stores] are configured, the domain the built-in local store owns (localhost)",
    )
    sender_domain: str | None = Field(
        None, description="local users send as user@sender_domain (masquerading); default: default_domain"
    )
    sender_override: Literal["anyone", "root"] = Field(
        "anyone",
        description="who may choose another envelope sender (sendmail -f, submit's sender, a From header):"
        " anyone, or only root and the daemon's own user (others send as user@sender_domain)",
    )
    bounce_copy_to: str | None = Field(
        None, description="gets a copy of every bounce (NDR) filed for a local sender (Postfix's postmaster)"
    )

    @field_validator("default_domain", "sender_domain")
    @classmethod
    def _domain(cls, domain: str | None) -> str | None:
        if domain is not None:
            parse_address(f"postmaster@{domain}")  # a BadAddress (a ValueError) names the problem
        return domain

    @field_validator("bounce_copy_to")
    @classmethod
    def _address(cls, address: str | None) -> str | None:
        return None if address is None else parse_address(address).address or None


def _default_stores() -> dict[str, StoreSection]:
    return {"local": StoreSection(provider="sqlite", addresses=["@localhost"])}


def _default_transports() -> dict[str, TransportSection]:
    return {"loopback": TransportSection(provider="loopback")}


class Config(_Strict):
    spooler: SpoolerSection = Field(default_factory=SpoolerSection)
    log: LogConfig = Field(default_factory=LogConfig)
    control: ControlSection = Field(default_factory=ControlSection)
    stores: dict[str, StoreSection] = Field(default_factory=_default_stores)
    transports: dict[str, TransportSection] = Field(default_factory=_default_transports)
    lists: dict[str, list[str]] = Field(
        default_factory=dict, description="distribution lists: address -> members"
    )
    addresses: AddressesSection = Field(default_factory=AddressesSection)
    aliases: dict[str, list[str]] = Field(
        default_factory=dict,
        description="applied at submission, like /etc/aliases: address or bare name -> address or list",
    )

    @field_validator("aliases", mode="before")
    @classmethod
    def _aliases(cls, aliases: Any) -> Any:
        if not isinstance(aliases, dict):
            return aliases  # pydantic names the type problem
        table: dict[str, list[str]] = {}
        for key, targets in aliases.items():
            if not isinstance(key, str) or not parse_address(key).address:
                raise ValueError(f"{key!r}: the null address cannot be an alias")
            entries = [targets] if isinstance(targets, str) else targets
            if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
                raise ValueError(f"{key!r}: an address or a list of addresses")
            name = parse_address(key).address
            table[name] = [m.address for entry in entries for m in parse_address_list(entry)]
            if not table[name]:
                raise ValueError(f"{key!r}: no address to send to")
        return table

    listeners: dict[str, ListenerSection] = Field(
        default_factory=dict, description="SMTP listeners, [listeners.NAME] (none by default)"
    )
    sender_routes: dict[str, str] = Field(
        default_factory=dict,
        description="envelope sender -> transport, before the address-type routing (an address, @domain,"
        ' or a wildcard like "*@*.example.org"; "*" is the default); a transport named here carries only'
        " the mail of the senders routed to it",
    )

    @field_validator("sender_routes")
    @classmethod
    def _sender_routes(cls, routes: dict[str, str]) -> dict[str, str]:
        for pattern in routes:
            if any(c in pattern for c in "*?["):
                if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in pattern):
                    raise ValueError(f"{pattern!r}: a wildcard pattern has no blanks or control characters")
            elif pattern.startswith("@"):
                parse_address(f"postmaster{pattern}")  # a BadAddress (a ValueError) names the problem
            elif not parse_address(pattern).address:
                raise ValueError(f'{pattern!r}: the null sender is matched by a wildcard ("*") only')
        return routes

    preprocessors: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="[preprocessors.NAME]: settings of a preprocessor named in spooler.preprocessors,"
        " checked by the preprocessor's own model (e.g. [preprocessors.dkim])",
    )
    metrics: MetricsSection = Field(default_factory=MetricsSection, description="Prometheus /metrics (off)")
    webhooks: dict[str, WebhookSection] = Field(
        default_factory=dict, description="delivery-event webhooks, [webhooks.NAME] (none by default)"
    )

    @field_validator("stores", "transports", "listeners", "webhooks")
    @classmethod
    def _names(cls, sections: dict[str, Any]) -> dict[str, Any]:
        for name in sections:
            if not _NAME.match(name):
                raise ValueError(f"name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
        return sections

    @field_validator("stores")
    @classmethod
    def _some_store(cls, stores: dict[str, StoreSection]) -> dict[str, StoreSection]:
        if not stores:
            raise ValueError("at least one store is needed")
        return stores


def parse_config(
    data: dict[str, Any], source: str | None = None, registry: PluginRegistry | None = None
) -> Config:
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        extra = plugin_problems(data, registry) if registry is not None else []
        raise ConfigError(validation_problems(exc, "") + extra, source) from exc
    problems = []
    if config.spooler.default_store not in config.stores:
        names = ", ".join(sorted(config.stores))
        problems.append(
            f"spooler.default_store: names {config.spooler.default_store!r}, but the stores are: {names}"
        )
    for name, section in config.stores.items():
        coupled = section.coupled_transport
        if coupled is not None and coupled not in config.transports:
            known = ", ".join(sorted(config.transports)) or "none"
            problems.append(f"stores.{name}.coupled_transport: no transport {coupled!r} (known: {known})")
    for pattern, transport in config.sender_routes.items():
        if transport not in config.transports:
            known = ", ".join(sorted(config.transports)) or "none"
            problems.append(f"sender_routes.{pattern}: no transport {transport!r} (known: {known})")
    for name in config.preprocessors:
        if name not in config.spooler.preprocessors:
            problems.append(
                f"preprocessors.{name}: configured, but {name!r} is not in spooler.preprocessors, so it"
                f" would never run (add it there: preprocessors = [..., {name!r}])"
            )
    for name, listener in config.listeners.items():
        if listener.store is not None and listener.store not in config.stores:
            problems.append(f"listeners.{name}.store: no store named {listener.store!r}")
    if problems:
        raise ConfigError(problems, source)
    return config


def load_config(
    path: str | os.PathLike[str] | None,
    registry: PluginRegistry | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read and validate a TOML file (``None``: the embedded default), with ``SPOOLERD__…`` variables
    from ``environ`` (default: the process environment) laid over it."""
    data: dict[str, Any] = {}
    source = None if path is None else os.fspath(path)
    if source is not None:
        try:
            with open(source, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError([f"cannot read the file: {exc.strerror or exc}"], source) from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError([f"not valid TOML: {exc}"], source) from exc
    overlay, problems = env_overlay(os.environ if environ is None else environ)
    if overlay or problems:
        source = f"{source or 'the default'} + {ENV_PREFIX}* environment"
    if problems:
        raise ConfigError(problems, source)
    if not data and not overlay:
        return Config()
    return parse_config(merged(data, overlay), source, registry)


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

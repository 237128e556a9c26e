"""The plugin registry: stores, transports and preprocessors, found only through entry points.

Each entry point is loaded once, at start, and checked against its contract; a plugin that fails to import
or lacks part of its contract is a start-up error naming the entry point (``group:name = module:attr``),
so a broken third-party package never shows up later as an AttributeError in the middle of a delivery.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel, ValidationError

from .abilities import Abilities, detect
from .contract import Contract, member, settings_model
from .errors import ConfigError, PluginError
from .preprocess import Preprocessor
from .store import STORE_METHODS, MessageStore, StoreContext, StoreProvider
from .transport import TRANSPORT_METHODS, Transport, TransportContext, TransportProvider

__all__ = [
    "PREPROCESSORS",
    "STORES",
    "TRANSPORTS",
    "OpenedTransport",
    "PluginRegistry",
    "plugin_settings",
    "self_check",
    "validation_problems",
]

STORES = "spoolerd.stores"
TRANSPORTS = "spoolerd.transports"
PREPROCESSORS = "spoolerd.preprocessors"
GROUPS = (STORES, TRANSPORTS, PREPROCESSORS)

STORE_CONTRACT = Contract("store", STORE_METHODS, flags=("can_queue",))
TRANSPORT_CONTRACT = Contract("transport", TRANSPORT_METHODS)


def _describe(ep: importlib.metadata.EntryPoint) -> str:
    return f"{ep.group}:{ep.name} = {ep.value}"


def validation_problems(exc: ValidationError, prefix: str) -> list[str]:
    """Turn a pydantic error into ``key.path: problem`` lines under ``prefix``."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(part) for part in (prefix, *err["loc"]) if part != "")
        message = err["msg"].removeprefix("Value error, ")
        problems.append(f"{key}: {message}")
    return problems


def plugin_settings(model: type[BaseModel], options: Mapping[str, Any], prefix: str) -> BaseModel:
    """``options`` validated by a plugin's own ``Settings`` model (ConfigError: ``key.path: problem``
    lines under ``prefix``). A key the model does not know is an error, as in spoolerd's own sections,
    unless the model itself says what becomes of extra keys (``model_config["extra"]``): pydantic's
    default drops them, and a misspelt key would silently leave its setting at the default."""
    unknown = [f"{prefix}.{key}: Extra inputs are not permitted" for key in _unknown_keys(model, options)]
    try:
        settings = model.model_validate(dict(options))
    except ValidationError as exc:
        raise ConfigError(unknown + validation_problems(exc, prefix)) from exc
    if unknown:
        raise ConfigError(unknown)
    return settings


def _unknown_keys(model: type[BaseModel], options: Mapping[str, Any]) -> list[str]:
    if model.model_config.get("extra") is not None:
        return []  # the plugin decided
    by_name = bool(model.model_config.get("populate_by_name") or model.model_config.get("validate_by_name"))
    known: set[str] = set()
    for name, field in model.model_fields.items():
        alias = field.validation_alias if field.validation_alias is not None else field.alias
        if alias is not None and not isinstance(alias, str):
            return []  # alias choices or paths: let the model alone judge
        known.update(k for k in (alias, name if alias is None or by_name else None) if k is not None)
    return [key for key in options if key not in known]


def self_check(check: Callable[[], None] | None, prefix: str) -> list[str]:
    """Run a built store's or transport's ``check`` (``abilities.checker``: does what ``start`` needs
    exist: files readable, secrets resolvable, directories writable?) and return its problems under
    ``prefix`` (``transports.NAME``). ``check`` raises ConfigError with ``key: problem`` lines; anything
    else it raises is reported as a problem too, so ``spoolerd check-config`` and ``run`` fail alike."""
    if check is None:
        return []
    try:
        check()
    except ConfigError as exc:
        return [f"{prefix}.{problem}" for problem in exc.problems]
    except Exception as exc:
        return [f"{prefix}: its check failed: {type(exc).__name__}: {exc}"]
    return []


@dataclass(frozen=True, slots=True)
class OpenedTransport:
    """A built (not started) transport and what it can do besides sending."""

    transport: Transport
    abilities: Abilities


class PluginRegistry:
    """Entry points by group and name, loaded lazily but at most once."""

    def __init__(self, entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> None:
        if entry_points is None:
            found = importlib.metadata.entry_points()
            entry_points = [ep for group in GROUPS for ep in found.select(group=group)]
        self._entry_points: dict[str, dict[str, list[importlib.metadata.EntryPoint]]] = {
            g: {} for g in GROUPS
        }
        for ep in entry_points:
            self._entry_points.setdefault(ep.group, {}).setdefault(ep.name, []).append(ep)
        self._loaded: dict[tuple[str, str], Any] = {}

    def names(self, group: str) -> list[str]:
        return sorted(self._entry_points.get(group, {}))

    def load(self, group: str, name: str) -> Any:
        key = (group, name)
        if key in self._loaded:
            return self._loaded[key]
        candidates = self._entry_points.get(group, {}).get(name, [])
        if not candidates:
            known = ", ".join(self.names(group)) or "none installed"
            raise PluginError(f"no entry point named {name!r} in group {group} (known: {known})")
        if len({ep.value for ep in candidates}) > 1:
            listed = "; ".join(_describe(ep) for ep in candidates)
            raise PluginError(f"two installed packages claim the entry point {group}:{name}: {listed}")
        ep = candidates[0]
        try:
            obj = ep.load()
        except Exception as exc:
            raise PluginError(
                f"entry point {_describe(ep)} failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        self._loaded[key] = obj
        return obj

    def _provider(self, group: str, name: str, contract: Contract) -> Any:
        cls = self.load(group, name)
        ep = self._entry_points[group][name][0]
        if settings_model(cls) is None:
            raise PluginError(f"entry point {_describe(ep)} has no pydantic 'Settings' model")
        missing = contract.missing(cls)
        if missing:
            raise PluginError(
                f"entry point {_describe(ep)} does not implement the {contract.kind} contract:"
                f" missing {', '.join(missing)}"
            )
        return cls

    def store_provider(self, name: str) -> StoreProvider:
        """The store provider class behind ``spoolerd.stores:name``, checked against the store contract."""
        return cast(StoreProvider, self._provider(STORES, name, STORE_CONTRACT))

    def transport_provider(self, name: str) -> TransportProvider:
        """The transport class behind ``spoolerd.transports:name``, checked against the transport contract."""
        return cast(TransportProvider, self._provider(TRANSPORTS, name, TRANSPORT_CONTRACT))

    def open_transport(
        self, provider: str, options: Mapping[str, Any], context: TransportContext
    ) -> OpenedTransport:
        """Validate ``options`` with the provider's own model, build the transport and detect its
        abilities (PluginError for one implemented by halves, naming the entry point)."""
        cls = self.transport_provider(provider)
        transport = cls(plugin_settings(cls.Settings, options, f"transports.{context.name}"), context)
        ep = self._entry_points[TRANSPORTS][provider][0]
        return OpenedTransport(transport, detect(transport, f"entry point {_describe(ep)}"))

    def preprocessor(self, name: str, options: Mapping[str, Any] | None = None) -> Preprocessor:
        """A preprocessor built from ``spoolerd.preprocessors:name``: a factory taking no arguments, or a
        class with a pydantic ``Settings`` model, built with ``options`` (its ``[preprocessors.NAME]``
        section) validated by it. A bad section raises ConfigError naming its keys."""
        factory = self.load(PREPROCESSORS, name)
        ep = self._entry_points[PREPROCESSORS][name][0]
        model = settings_model(factory)
        if options and model is None:
            raise ConfigError([f"preprocessors.{name}: the preprocessor {name!r} takes no settings"])
        args: tuple[BaseModel, ...] = ()
        if model is not None:
            args = (plugin_settings(model, options or {}, f"preprocessors.{name}"),)
        try:
            instance = factory(*args)
        except ConfigError:
            raise
        except Exception as exc:
            raise PluginError(
                f"entry point {_describe(ep)} could not be built: {type(exc).__name__}: {exc}"
            ) from exc
        if not callable(instance) or not isinstance(member(instance, "name"), str):
            raise PluginError(f"entry point {_describe(ep)} is not a preprocessor (a callable with a name)")
        return cast(Preprocessor, instance)

    def open_store(self, provider: str, options: Mapping[str, Any], context: StoreContext) -> MessageStore:
        """Validate ``options`` with the provider's own model and build the (not yet started) store."""
        cls = self.store_provider(provider)
        return cls(plugin_settings(cls.Settings, options, f"stores.{context.name}"), context)

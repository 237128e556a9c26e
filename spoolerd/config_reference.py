"""The configuration reference, generated from the pydantic models themselves (the core's sections and
the ``Settings`` of every provider this distribution ships), so it cannot drift from what the daemon
accepts. ``python -m spoolerd.config_reference > config/reference.md``; a test checks the file."""

from __future__ import annotations

import enum
import importlib.metadata
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .config import (
    SENT_RETENTION,
    AddressesSection,
    Config,
    ControlSection,
    LogConfig,
    RetrySection,
    SpoolerSection,
    StoreSection,
    TransportSection,
)
from .config_env import ENV_PREFIX
from .contract import settings_model
from .duration import format_duration
from .listener_config import ListenerSection
from .plugins import PREPROCESSORS, STORES, TRANSPORTS
from .webhooks.settings import WebhookSection

__all__ = ["documented_models", "render"]

_COMPUTED = {
    "state_dir": "`$STATE_DIRECTORY`, else `./spool`",
    "reporting_mta": "this host's name",
    "default_domain": "this host's fully qualified name (`localhost` with no `[stores]`)",
}
_COMPUTED["allowed_networks"] = '`["127.0.0.0/8", "::1/128"]` (loopback)'
_COMPUTED["sent_retention"] = f'`"{format_duration(SENT_RETENTION)}"` ({SENT_RETENTION:.0f} seconds)'


_SECTIONS: tuple[tuple[str, type[BaseModel], tuple[str, ...]], ...] = (
    ("[spooler]", SpoolerSection, ("retry",)),
    ("[spooler.retry]", RetrySection, ()),
    ("[log]", LogConfig, ()),
    ("[control]", ControlSection, ()),
    ("[listeners.NAME]", ListenerSection, ()),
    ("[addresses]", AddressesSection, ()),
    ("[webhooks.NAME]", WebhookSection, ()),
)


def documented_models() -> list[type[BaseModel]]:
    """Every model whose keys the reference lists: the core's sections, the frame of a store's and a
    transport's section, and the Settings of every provider this distribution ships."""
    providers = [settings for group in (STORES, TRANSPORTS) for _name, settings in _providers(group)]
    preprocessors = [
        m for _name, settings in _providers(PREPROCESSORS) for m in (settings, *_nested(settings))
    ]
    return (
        [model for _title, model, _skip in _SECTIONS]
        + [StoreSection, TransportSection]
        + providers
        + preprocessors
    )


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f'"{a}"' for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type(a) for a in args)
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return f"table of {_type(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " \\| ".join(f'"{m.value}"' for m in annotation)
    if annotation is type(None):
        return "none"
    return {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "Path": "path"}.get(
        getattr(annotation, "__name__", str(annotation)), getattr(annotation, "__name__", str(annotation))
    )


def _default(name: str, field: Any) -> str:
    if name in _COMPUTED:
        return _COMPUTED[name]
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()
    else:
        return "**required**"
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, list):
        value = [v.value if isinstance(v, enum.Enum) else v for v in value]
    if value is None:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"


def _table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[str]:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        meaning = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | {_type(field.annotation)} | {_default(name, field)} | {meaning} |")
    return lines


def _providers(group: str) -> list[tuple[str, type[BaseModel]]]:
    """The providers this distribution ships (third-party ones document themselves); of preprocessors,
    those that take settings."""
    found = []
    for ep in importlib.metadata.entry_points(group=group):
        if ep.dist is not None and ep.dist.name == "spoolerd":
            settings = settings_model(ep.load())
            if settings is not None:
                found.append((ep.name, settings))
    return sorted(found, key=lambda item: item[0])


def _nested(model: type[BaseModel]) -> list[type[BaseModel]]:
    """The models a model's keys hold (a table of them, or a list), in the order they appear."""
    found: list[type[BaseModel]] = []
    todo = [field.annotation for field in model.model_fields.values()]
    while todo:
        annotation = todo.pop(0)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += [annotation] if annotation not in found else []
        todo += typing.get_args(annotation)
    return found


def render() -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated from the pydantic models by `python -m spoolerd.config_reference`; a test keeps it",
        "current. The file is TOML (`spoolerd run --config FILE`, or `$SPOOLERD_CONFIG`); every key may",
        f"also be set as an environment variable `{ENV_PREFIX}SECTION__KEY` (each `__` one level down,",
        f"e.g. `{ENV_PREFIX}SPOOLER__RETRY__INITIAL=60`,",
        f"`{ENV_PREFIX}TRANSPORTS__RELAY__HOST=smtp.example.org`), which wins over the file.",
        "`config/spoolerd.toml` is a commented example.",
        "",
    ]
    for title, model, skip in _SECTIONS:
        out += [
            f"## `{title}`",
            "",
            *((model.__doc__ or "").strip().splitlines()[:1]),
            "",
            *_table(model, skip),
            "",
        ]
    for title, frame, group in (
        ("[stores.NAME]", StoreSection, STORES),
        ("[transports.NAME]", TransportSection, TRANSPORTS),
    ):
        out += [
            f"## `{title}`",
            "",
            "`provider` names an entry point in `" + group + "`; these keys belong to spoolerd, every other",
            "key to the provider (below).",
            "",
            *_table(frame),
            "",
        ]
        for name, settings in _providers(group):
            keys = _table(settings) if settings.model_fields else ["No keys of its own."]
            out += [f'### `provider = "{name}"`', "", *keys, ""]
    out += [
        "## `[preprocessors.NAME]`",
        "",
        "The settings of a preprocessor named in `spooler.preprocessors`, for those that take any.",
        "",
    ]
    for name, settings in _providers(PREPROCESSORS):
        out += [f"### `[preprocessors.{name}]`", "", *_table(settings), ""]
        for model in _nested(settings):
            doc = (model.__doc__ or "").strip().splitlines()[:1]
            out += [f"#### `{model.__name__}`", "", *doc, "", *_table(model), ""]
    lists = Config.model_fields["lists"]
    out += ["## `[lists]`", "", f'{lists.description}: `"team@example.org" = ["a@example.org", …]`.', ""]
    aliases = Config.model_fields["aliases"]
    out += ["## `[aliases]`", "", f'{aliases.description}: `root = "admin@example.org"`.', ""]
    routes = Config.model_fields["sender_routes"]
    out += [
        "## `[sender_routes]`",
        "",
        f'{routes.description}: `"alice@example.org" = "relay-alice"`, `"@example.net" = "relay-net"`,',
        '`"*" = "relay"`.',
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")

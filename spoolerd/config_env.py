"""Configuration from the environment, for containers: ``SPOOLERD__SECTION__KEY=value``.

Each ``__`` steps one level down, so every key is reachable, however nested:
``SPOOLERD__SPOOLER__MAX_IN_FLIGHT=32``, ``SPOOLERD__SPOOLER__RETRY__INITIAL=60``,
``SPOOLERD__TRANSPORTS__RELAY__HOST=smtp.example.org``. Names are lower-cased (a section named with
capitals in the file cannot be reached). A value is a string, converted by the models like any other
(``32``, ``true``); one that starts with ``[``, ``{`` or ``"`` is read as a TOML value (a list, a table,
a quoted string). The environment wins over the file, key by key; a section the environment names
replaces the built-in default sections of its kind, as one in the file would.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

__all__ = ["ENV_PREFIX", "env_overlay", "merged"]

ENV_PREFIX = "SPOOLERD__"


def _value(raw: str) -> Any:
    """A string, which the config models convert as they would a TOML string (``32``, ``true``); an
    array, table or quoted string is read as TOML (``["a", "b"]``, ``{x = 1}``, ``"12345"``)."""
    if raw.lstrip()[:1] in ("[", "{", '"'):
        try:
            return tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            pass
    return raw


def env_overlay(environ: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The nested settings the environment gives, and a problem line for each variable that cannot be
    placed (an empty level, or a key that is both a value and a section)."""
    overlay: dict[str, Any] = {}
    problems: list[str] = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if not all(path):
            problems.append(f"{name}: empty key between '__' separators")
            continue
        node = overlay
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(f"{name}: {part} is set as a value by another variable")
                break
            node = child
        else:
            if isinstance(node.get(path[-1]), dict):
                problems.append(f"{name}: {path[-1]} is a section, set by other variables")
            else:
                node[path[-1]] = _value(environ[name])
    return overlay, problems


def merged(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overlay`` laid over it, tables merged key by key."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out

"""A plugin's members read by name: here only, and only when the plugin is loaded or built.

The registry (spoolerd/plugins.py) checks each store and transport class against a declared ``Contract``
(the methods of ``MessageStore`` / ``Transport`` and the flags the core reads) and a preprocessor against
its shape; ``abilities.detect`` reads a built transport's optional members once. After that the core
holds typed values (the class as a ``StoreProvider``, the transport's slot), never asks a plugin object
what it has, and so never meets an AttributeError in the middle of a delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

__all__ = ["MISSING", "Contract", "member", "settings_model"]

MISSING: Any = object()  # what ``member`` gives for a member the plugin does not have


def member(plugin: object, name: str) -> Any:
    """``plugin``'s member ``name``, or ``MISSING``: the one place the core looks a plugin's members up by
    name (at load time, to check them)."""
    return getattr(plugin, name, MISSING)


def settings_model(plugin: object) -> type[BaseModel] | None:
    """The plugin's pydantic ``Settings`` model, or None when it has none (or something else by that name)."""
    model = member(plugin, "Settings")
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


@dataclass(frozen=True, slots=True)
class Contract:
    """What a kind of plugin must have: the methods the core calls and the bool flags it reads."""

    kind: str  # "store", "transport": named in the error
    methods: tuple[str, ...]
    flags: tuple[str, ...] = ()

    def missing(self, plugin: object) -> list[str]:
        """The members ``plugin`` lacks (a method not callable, a flag not a bool), in declared order."""
        return [m for m in self.methods if not callable(member(plugin, m))] + [
            f for f in self.flags if not isinstance(member(plugin, f), bool)
        ]

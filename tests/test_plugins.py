"""The plugin registry: entry points loaded once, checked against the contract, errors naming them."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from spoolerd.config import open_stores, parse_config
from spoolerd.errors import ConfigError, PluginError
from spoolerd.plugins import STORES, PluginRegistry, plugin_settings
from stores.sqlite import SqliteStore


class ReadOnlyArchive(SqliteStore):
    """A store that can receive mail but not queue it (the seed's store without outgoing support)."""

    can_queue = False


class NotAStore:
    class Settings:  # not a pydantic model
        pass


def registry_with(*entries: tuple[str, str]) -> PluginRegistry:
    return PluginRegistry([EntryPoint(name, value, STORES) for name, value in entries])


def test_installed_entry_points_include_sqlite() -> None:
    registry = PluginRegistry()
    assert "sqlite" in registry.names(STORES)
    assert registry.store_provider("sqlite") is SqliteStore
    assert registry.load(STORES, "sqlite") is registry.load(STORES, "sqlite")  # loaded once


def test_an_entry_point_that_fails_to_import_is_named() -> None:
    registry = registry_with(("broken", "no_such_module.anywhere:Store"))
    with pytest.raises(PluginError) as err:
        registry.store_provider("broken")
    message = str(err.value)
    assert "spoolerd.stores:broken = no_such_module.anywhere:Store" in message
    assert "ModuleNotFoundError" in message


def test_an_entry_point_missing_its_attribute_is_named() -> None:
    registry = registry_with(("gone", "stores.sqlite:NoSuchClass"))
    with pytest.raises(PluginError, match=r"spoolerd.stores:gone = stores.sqlite:NoSuchClass failed to load"):
        registry.store_provider("gone")


def test_a_class_that_breaks_the_contract_is_refused() -> None:
    registry = registry_with(("fake", f"{__name__}:NotAStore"))
    with pytest.raises(PluginError, match="no pydantic 'Settings' model"):
        registry.store_provider("fake")


class HalfAStore:
    """A pydantic Settings model, but not the rest of the store contract."""

    Settings = SqliteStore.Settings
    can_queue = "yes"  # not a bool

    async def start(self) -> None: ...


def test_a_class_missing_part_of_the_contract_is_refused_naming_what_is_missing() -> None:
    registry = registry_with(("half", f"{__name__}:HalfAStore"))
    with pytest.raises(PluginError) as err:
        registry.store_provider("half")
    message = str(err.value)
    assert message.startswith(f"entry point spoolerd.stores:half = {__name__}:HalfAStore does not implement")
    missing = message.partition("missing ")[2].split(", ")
    assert "start" not in missing and {"stop", "submit", "lock", "can_queue"} <= set(missing)
    assert missing[-1] == "can_queue"  # the methods first, as declared, then the flags


def test_two_packages_claiming_one_name_is_an_error() -> None:
    registry = registry_with(("dup", "stores.sqlite:SqliteStore"), ("dup", f"{__name__}:ReadOnlyArchive"))
    with pytest.raises(PluginError, match="two installed packages claim"):
        registry.store_provider("dup")


def test_a_store_that_cannot_queue_cannot_be_the_default(tmp_path: Path) -> None:
    registry = registry_with(
        ("sqlite", "stores.sqlite:SqliteStore"), ("archive", f"{__name__}:ReadOnlyArchive")
    )
    config = parse_config(
        {
            "spooler": {"state_dir": str(tmp_path), "default_store": "old"},
            "stores": {"old": {"provider": "archive"}, "local": {"provider": "sqlite"}},
        }
    )
    with pytest.raises(ConfigError) as err:
        open_stores(config, registry)
    (problem,) = err.value.problems
    assert problem.startswith("spooler.default_store:") and "cannot queue outgoing mail" in problem

    fine = parse_config(
        {
            "spooler": {"state_dir": str(tmp_path), "default_store": "local"},
            "stores": {"old": {"provider": "archive"}, "local": {"provider": "sqlite"}},
        }
    )
    assert not open_stores(fine, registry).stores["old"].can_queue


class _Lax(BaseModel):
    """A plugin's settings as the README's example writes them: pydantic's default drops unknown keys."""

    directory: str
    domain: str = "example.org"
    level: int = Field(1, alias="verbosity")


class _Open(_Lax):
    model_config = ConfigDict(extra="allow")  # the plugin asks for every key itself


def test_a_key_no_settings_model_knows_is_an_error_unless_the_model_decides() -> None:
    good = {"directory": "/tmp/x", "verbosity": 3}
    assert plugin_settings(_Lax, good, "transports.files") == _Lax(directory="/tmp/x", verbosity=3)
    with pytest.raises(ConfigError) as caught:
        plugin_settings(_Lax, {**good, "domian": "a.example"}, "transports.files")  # misspelt
    assert caught.value.problems == ["transports.files.domian: Extra inputs are not permitted"]
    with pytest.raises(ConfigError) as both:
        plugin_settings(_Lax, {"domian": "a.example"}, "transports.files")
    assert both.value.problems == [
        "transports.files.domian: Extra inputs are not permitted",
        "transports.files.directory: Field required",
    ]
    with pytest.raises(ConfigError) as by_name:  # the field's name, where pydantic reads only its alias
        plugin_settings(_Lax, {"directory": "/tmp/x", "level": 3}, "transports.files")
    assert by_name.value.problems == ["transports.files.level: Extra inputs are not permitted"]
    assert plugin_settings(_Open, {**good, "domian": "a.example"}, "transports.files").domian == "a.example"  # type: ignore[attr-defined]

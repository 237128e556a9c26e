"""Configuration: defaults that work, the example file validates, and errors name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spoolerd.config import Config, load_config, open_stores, parse_config
from spoolerd.errors import ConfigError
from spoolerd.plugins import PluginRegistry

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "spoolerd.toml"


def test_no_config_is_the_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    config = load_config(None)
    assert config.spooler.state_dir == Path("spool")
    assert config.spooler.default_store == "local"
    assert config.stores["local"].provider == "sqlite"
    opened = open_stores(config, PluginRegistry())
    assert opened.default == "local" and opened.stores["local"].can_queue


def test_state_directory_comes_from_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/spoolerd:/var/lib/other")
    assert Config().spooler.state_dir == Path("/var/lib/spoolerd")


def test_example_config_validates_with_every_provider_model(tmp_path: Path) -> None:
    config = load_config(EXAMPLE)
    registry = PluginRegistry()
    opened = open_stores(config, registry, source=str(EXAMPLE))
    assert config.log.format == "json"
    assert set(opened.stores) == {"local"}
    assert set(config.transports) == {"loopback"}  # as shipped: runs with no password file to create
    # the templates, switched on as the file says (uncomment the lines with no space after "#")
    enabled = tmp_path / "enabled.toml"
    enabled.write_text(re.sub(r"^#(?=\S)", "", EXAMPLE.read_text(), flags=re.M))
    templates = load_config(enabled, registry).transports
    assert [templates[n].provider for n in ("relay", "mail")] == ["smtp", "imap"]
    for section in templates.values():
        registry.transport_provider(section.provider).Settings.model_validate(section.options())


def test_example_config_shows_every_key() -> None:
    """Set or commented out, every key of every section and built-in provider appears in the example."""
    from spoolerd.config_reference import documented_models

    text = EXAMPLE.read_text()
    for model in documented_models():
        for name in model.model_fields:
            shown = re.search(rf"^#?\s*{name}\s*=", text, re.M) or f"[spooler.{name}]" in text
            assert shown, f"{model.__name__}.{name} is not in config/spoolerd.toml"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"log": {"level": "loud"}}, "log.level"),
        ({"spooler": {"default_store": "nope"}}, "spooler.default_store"),
        ({"spooler": {"colour": "blue"}}, "spooler.colour"),
        ({"stores": {"bad name!": {}}}, "stores"),
        ({"stores": {}}, "stores"),
    ],
)
def test_frame_errors_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, "test.toml")
    assert any(p.startswith(key) for p in err.value.problems), err.value.problems
    assert str(err.value).startswith("test.toml: ")


def test_provider_keys_are_checked_by_the_provider_model() -> None:
    config = parse_config({"stores": {"local": {"provider": "sqlite", "busy_timeout": -1, "pth": "typo.db"}}})
    with pytest.raises(ConfigError) as err:
        open_stores(config, PluginRegistry())
    problems = err.value.problems
    assert any(p.startswith("stores.local.busy_timeout:") for p in problems), problems
    assert any(p.startswith("stores.local.pth:") for p in problems), problems


def test_unknown_provider_names_the_store_and_the_choices() -> None:
    config = parse_config({"stores": {"local": {"provider": "sqlit"}}})
    with pytest.raises(ConfigError) as err:
        open_stores(config, PluginRegistry())
    (problem,) = err.value.problems
    assert problem.startswith("stores.local.provider:") and "'sqlit'" in problem and "sqlite" in problem


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[spooler\nstate_dir = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)

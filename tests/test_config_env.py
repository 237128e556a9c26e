"""Configuration from SPOOLERD__SECTION__KEY environment variables, laid over the file key by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from spoolerd.config import load_config
from spoolerd.config_env import env_overlay, merged
from spoolerd.errors import ConfigError
from spoolerd.plugins import PluginRegistry
from transports.smtp import SmtpSettings


def test_overlay_nests_and_types_values() -> None:
    overlay, problems = env_overlay(
        {
            "SPOOLERD__SPOOLER__MAX_IN_FLIGHT": "32",
            "SPOOLERD__SPOOLER__RETRY__INITIAL": "60.5",
            "SPOOLERD__TRANSPORTS__RELAY__HOST": "smtp.example.org",
            "SPOOLERD__TRANSPORTS__RELAY__VERIFY": "false",
            "SPOOLERD__TRANSPORTS__RELAY__HELO": '"123"',
            "SPOOLERD__TRANSPORTS__RELAY__USERNAME": "12345",
            "SPOOLERD__STORES__LOCAL__ADDRESSES": '["@example.org", "me@example.net"]',
            "SPOOLERD_CONFIG": "/not/an/overlay",
            "HOME": "/root",
        }
    )
    assert problems == []
    assert overlay == {
        "spooler": {"max_in_flight": "32", "retry": {"initial": "60.5"}},  # the models convert them
        "transports": {
            "relay": {"host": "smtp.example.org", "verify": "false", "helo": "123", "username": "12345"}
        },
        "stores": {"local": {"addresses": ["@example.org", "me@example.net"]}},
    }


def test_overlay_problems_name_the_variable() -> None:
    _, problems = env_overlay(
        {"SPOOLERD__SPOOLER____X": "1", "SPOOLERD__LOG": "x", "SPOOLERD__LOG__LEVEL": "debug"}
    )
    assert any(p.startswith("SPOOLERD__SPOOLER____X: empty key") for p in problems)
    assert "SPOOLERD__LOG__LEVEL: log is set as a value by another variable" in problems
    _, problems = env_overlay({"SPOOLERD__LOG__LEVEL": "debug", "SPOOLERD__LOG__LEVEL__X": "1"})
    assert problems == ["SPOOLERD__LOG__LEVEL__X: level is set as a value by another variable"]


def test_merge_is_key_by_key() -> None:
    base = {"spooler": {"state_dir": "/s", "retry": {"initial": 1, "maximum": 2}}, "log": {"level": "info"}}
    assert merged(base, {"spooler": {"retry": {"initial": 5}}}) == {
        "spooler": {"state_dir": "/s", "retry": {"initial": 5, "maximum": 2}},
        "log": {"level": "info"},
    }


def test_environment_overrides_the_file_and_adds_sections(tmp_path: Path) -> None:
    cfg = tmp_path / "spoolerd.toml"
    cfg.write_text(f'[spooler]\nstate_dir = "{tmp_path}"\nmax_in_flight = 4\n[log]\nlevel = "debug"\n')
    config = load_config(
        cfg,
        PluginRegistry(),
        environ={
            "SPOOLERD__SPOOLER__MAX_IN_FLIGHT": "32",
            "SPOOLERD__TRANSPORTS__RELAY__PROVIDER": "smtp",
            "SPOOLERD__TRANSPORTS__RELAY__HOST": "smtp.example.org",
            "SPOOLERD__TRANSPORTS__RELAY__TLS": "implicit",
            "SPOOLERD__TRANSPORTS__RELAY__PORT": "2465",
            "SPOOLERD__TRANSPORTS__RELAY__VERIFY": "false",
            "SPOOLERD__TRANSPORTS__RELAY__USERNAME": "12345",  # digits, still a name
            "SPOOLERD__TRANSPORTS__RELAY__PASSWORD_ENV": "X",
        },
    )
    assert config.spooler.max_in_flight == 32
    assert config.spooler.state_dir == tmp_path and config.log.level == "debug"  # the file's, kept
    relay = config.transports["relay"]
    assert relay.provider == "smtp"
    settings = SmtpSettings.model_validate(relay.options())
    assert (settings.host, settings.tls, settings.port, settings.verify, settings.username) == (
        "smtp.example.org", "implicit", 2465, False, "12345",
    )  # fmt: skip


def test_environment_alone_changes_the_default() -> None:
    config = load_config(None, PluginRegistry(), environ={"SPOOLERD__LOG__FORMAT": "json"})
    assert config.log.format == "json" and config.stores["local"].provider == "sqlite"


def test_bad_values_from_the_environment_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(
            None,
            PluginRegistry(),
            environ={
                "SPOOLERD__SPOOLER__MAX_IN_FLIGHT": "0",
                "SPOOLERD__TRANSPORTS__RELAY__PROVIDER": "smtp",
            },
        )
    text = str(caught.value)
    assert "SPOOLERD__* environment" in text
    assert "spooler.max_in_flight" in text and "transports.relay.host" in text

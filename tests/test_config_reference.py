"""config/reference.md is what the models say, and every key the daemon accepts is explained there."""

from __future__ import annotations

from pathlib import Path

from spoolerd.config_reference import documented_models, render

REFERENCE = Path(__file__).resolve().parents[1] / "config" / "reference.md"


def test_the_reference_is_current() -> None:
    assert REFERENCE.read_text() == render(), (
        "regenerate: python -m spoolerd.config_reference > config/reference.md"
    )


def test_every_key_is_described_and_listed() -> None:
    text = render()
    models = documented_models()
    from stores.sqlite.store import SqliteStore
    from transports.smtp import SmtpSettings

    assert SmtpSettings in models and SqliteStore.Settings in models  # the built-in providers are found
    for model in models:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            listed = f"| `{name}` |" in text or f"## `[spooler.{name}]`" in text
            assert listed, f"{model.__name__}.{name} is missing from the reference"
    for provider in ("sqlite", "loopback", "smtp", "imap"):
        assert f'### `provider = "{provider}"`' in text
    assert "test-scripted" not in text  # only what this distribution ships

"""A webhook's secret is checked before anything starts: ``check-config`` and ``run`` exit 78 naming
the key, and a good one passes; the secret never appears in what they print."""

from __future__ import annotations

from pathlib import Path

from tests.test_check_config import spoolerd


def test_an_unreadable_secret_stops_check_config_and_run(tmp_path: Path) -> None:
    secret = tmp_path / "webhook.secret"
    path = tmp_path / "spoolerd.toml"
    path.write_text(
        f'[spooler]\nstate_dir = "{tmp_path / "state"}"\n[control]\nsocket = "{tmp_path / "c.sock"}"\n'
        f'[webhooks.app]\nurl = "http://127.0.0.1:9/hook"\nsecret_file = "{secret}"\n'
        f'[webhooks.env]\nurl = "http://127.0.0.1:9/hook"\nsecret_env = "SPL_UNSET_WEBHOOK_SECRET"\n'
    )
    for command in (["check-config", path], ["run", "--config", path]):
        done = spoolerd(*command)
        assert done.returncode == 78, done.stderr
        assert f"webhooks.app.secret_file: cannot read {secret}" in done.stderr
        assert (
            "webhooks.env.secret_env: the environment variable SPL_UNSET_WEBHOOK_SECRET is not set"
            in done.stderr
        )
    secret.write_text("hunter2\n")
    path.write_text(path.read_text().split("[webhooks.env]")[0])
    done = spoolerd("check-config", path)
    assert (done.returncode, done.stdout) == (0, f"{path}: ok\n"), done.stderr
    assert "hunter2" not in done.stderr + done.stdout

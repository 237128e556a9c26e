"""``spoolerd check-config`` checks what ``run`` needs before it starts anything: a file a transport names
is readable, a secret resolves, the store's directory can be written. Both exit 78 naming the key and
the file, so what check-config passes, run starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "spoolerd.toml"


def spoolerd(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLERD") and k != "RELAY_SECRET"}
    return subprocess.run(
        [sys.executable, "-m", "spoolerd.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,  # a run that started instead of refusing fails here, it does not hang
        env=env,
        check=False,
    )


def config(tmp_path: Path, relay: str, state_dir: Path | None = None) -> Path:
    path = tmp_path / "spoolerd.toml"
    path.write_text(
        f"""
[spooler]
state_dir = "{state_dir or tmp_path / "state"}"
[control]
socket = "{tmp_path / "control.sock"}"
[transports.loopback]
provider = "loopback"
[transports.relay]
provider = "smtp"
host = "127.0.0.1"
port = 2525
{relay}
"""
    )
    return path


@pytest.mark.parametrize(
    ("relay", "expected"),
    [
        (
            'username = "u"\npassword_file = "{tmp}/missing-password"',
            "transports.relay.password_file: cannot read {tmp}/missing-password: No such file or directory",
        ),
        (
            'ca_file = "{tmp}/missing-ca.pem"',
            "transports.relay.ca_file: cannot read {tmp}/missing-ca.pem: No such file or directory",
        ),
        (
            'client_cert = "{tmp}/missing-cert.pem"',
            "transports.relay.client_cert: cannot read {tmp}/missing-cert.pem: No such file or directory",
        ),
        (
            'username = "u"\npassword_env = "RELAY_SECRET"',
            "transports.relay.password_env: the environment variable RELAY_SECRET is not set",
        ),
        (
            'username = "u"\nauth = "xoauth2"\ntoken_command = ["{tmp}/no-such-helper"]',
            "transports.relay.token_command: {tmp}/no-such-helper is not an executable program",
        ),
    ],
    ids=["password_file", "ca_file", "client_cert", "password_env", "token_command"],
)
def test_check_config_refuses_what_run_refuses(tmp_path: Path, relay: str, expected: str) -> None:
    path = config(tmp_path, relay.replace("{tmp}", str(tmp_path)))
    expected = expected.replace("{tmp}", str(tmp_path))
    for command in (["check-config", path], ["run", "--config", path]):
        done = spoolerd(*command)
        assert done.returncode == 78, (command, done.stderr)
        assert f"spoolerd: config error: {path}: {expected}" in done.stderr.splitlines(), done.stderr
    assert not (tmp_path / "state").exists()  # nothing was started, not even the store


def test_every_problem_is_reported_at_once_and_a_good_file_passes(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    relay = f'username = "u"\npassword_file = "{secret}"\nca_file = "{tmp_path}/missing-ca.pem"'
    path = config(tmp_path, relay)
    problems = spoolerd("check-config", path).stderr
    assert "transports.relay.password_file:" in problems and "transports.relay.ca_file:" in problems
    secret.write_text("hunter2\n")
    (tmp_path / "missing-ca.pem").write_text("not a certificate\n")
    done = spoolerd("check-config", path)
    assert done.returncode == 78 and "transports.relay.ca_file:" in done.stderr  # unreadable as a CA
    assert "hunter2" not in done.stderr
    path.write_text(path.read_text().replace(f'ca_file = "{tmp_path}/missing-ca.pem"', ""))
    done = spoolerd("check-config", path)
    assert (done.returncode, done.stdout) == (0, f"{path}: ok\n"), done.stderr


def test_a_state_directory_that_cannot_be_created_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = config(tmp_path, "", state_dir=blocker / "state")
    for command in (["check-config", path], ["run", "--config", path]):
        done = spoolerd(*command)
        assert done.returncode == 78, done.stderr
        problem = f"cannot create {blocker}/state: {blocker} is not a directory"
        assert f"spooler.state_dir: {problem}" in done.stderr
        assert f"stores.local.path: cannot create {blocker}/state" in done.stderr


def test_the_shipped_config_passes_as_it_is() -> None:
    done = spoolerd("check-config", EXAMPLE)
    assert (done.returncode, done.stdout) == (0, f"{EXAMPLE}: ok\n"), done.stderr


def test_a_third_party_transport_offers_its_own_check(tmp_path: Path) -> None:
    """The test plugins' ``test-inbound`` transport (installed through its entry point, like any
    third-party package) has a ``check()``: its problem is reported under its section, like a built-in's."""
    path = tmp_path / "spoolerd.toml"
    drop = tmp_path / "drop"
    path.write_text(
        f'[spooler]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[transports.feed]\nprovider = "test-inbound"\ndrop_dir = "{drop}"\n'
    )
    for command in (["check-config", path], ["run", "--config", path]):
        done = spoolerd(*command)
        assert done.returncode == 78, done.stderr
        assert f"transports.feed.drop_dir: {drop} is not a directory" in done.stderr
    drop.mkdir()
    assert spoolerd("check-config", path).returncode == 0


def test_a_listeners_certificate_and_credentials_are_checked_before_start(tmp_path: Path) -> None:
    """A listener's TLS certificate, its key and its credentials file are loaded by check-config and
    run alike: a missing or mismatched file is a config error naming the key, never a failure at the
    first STARTTLS or AUTH, and never quoting a key or a hash."""
    import trustme

    ca = trustme.CA()
    one, other = ca.issue_cert("localhost"), ca.issue_cert("localhost")
    cert, key, wrong_key = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "other-key.pem"
    one.cert_chain_pems[0].write_to_path(str(cert))
    one.private_key_pem.write_to_path(str(key))
    other.private_key_pem.write_to_path(str(wrong_key))
    users = tmp_path / "users"
    users.write_text("app:not-a-hash\n")
    listener = (
        '[listeners.apps]\naddress = "127.0.0.1:2587"\ntls = "starttls"\n'
        f'cert_file = "{cert}"\nkey_file = "{tmp_path}/missing-key.pem"\ncredentials_file = "{users}"\n'
    )
    path = config(tmp_path, "")
    path.write_text(path.read_text() + listener)
    for command in (["check-config", path], ["run", "--config", path]):
        done = spoolerd(*command)
        assert done.returncode == 78, (command, done.stderr)
        lines = done.stderr.splitlines()
        assert (
            f"spoolerd: config error: {path}: listeners.apps.key_file:"
            f" cannot read {tmp_path}/missing-key.pem: No such file or directory"
        ) in lines, done.stderr
        assert (
            f"spoolerd: config error: {path}: listeners.apps.credentials_file: {users} line 1:" in done.stderr
        )
    path.write_text(path.read_text().replace("missing-key.pem", "other-key.pem"))
    done = spoolerd("check-config", path)
    assert done.returncode == 78 and "listeners.apps.cert_file: cannot load" in done.stderr, done.stderr
    assert "PRIVATE KEY" not in done.stderr
    from spoolerd.listener.credentials import hash_password

    users.write_text(f"app:{hash_password('secret')}\n")
    path.write_text(path.read_text().replace("other-key.pem", "key.pem"))
    done = spoolerd("check-config", path)
    assert (done.returncode, done.stdout) == (0, f"{path}: ok\n"), done.stderr

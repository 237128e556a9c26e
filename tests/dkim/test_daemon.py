"""The dkim preprocessor in a running spooler: configured in ``[preprocessors.dkim]``, it signs after
every other preprocessor (entry points' and transports' alike, wherever it is listed); with signing
required, mail it cannot sign is returned to the sender; ``spoolerd check-config`` names a bad key; the
signature survives the relay hop through a real Postfix into a Maildir."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from spoolerd.config import parse_config
from spoolerd.daemon import build
from spoolerd.errors import ConfigError
from spoolerd.message import FolderRole, RecipientState
from spoolerd.plugins import PluginRegistry
from spoolerd.reconfigure import reload
from tests.conftest import FakeClock
from tests.dkim.keys import Dns, opendkim_results, rsa_key
from tests.engine.harness import Harness, parse, spooler
from tests.peers.postfix import Postfix, running

CONTENT = (
    b"From: Me <me@example.org>\r\nTo: alice@test.local\r\nSubject: relayed\r\n"
    b"Message-ID: <dkim-1@example.org>\r\n\r\nsigned on the way out\r\n"
)


def signature_tag(content: bytes, tag: str) -> str:
    value = parse(content)["DKIM-Signature"].replace("\r\n", "").replace(" ", "")
    return dict(t.split("=", 1) for t in value.split(";") if t)[tag]


def dkim_section(*keys: tuple[str, Path], **options: Any) -> dict[str, Any]:
    entries = [{"selector": s, "key_file": str(p)} for s, p in keys]
    return {"dkim": {"domains": {"example.org": entries}} | options}


async def test_signs_after_every_other_preprocessor(
    tmp_path: Path, clock: FakeClock, dns: Dns, rsa_file: Path
) -> None:
    transports = {
        "preonly": {"provider": "test-tagger", "preprocess_types": ["SMTP"]},
        "loopback": {"provider": "loopback"},
    }
    signed_headers = ["from", "subject", "x-preprocessed-by", "date", "message-id"]
    async with spooler(
        tmp_path,
        clock,
        transports,
        spooler={"preprocessors": ["dkim", "test-stamp", "headers"]},  # listed first, run last
        preprocessors=dkim_section(("s1", rsa_file), headers=signed_headers),
        stores={"local": {"provider": "sqlite", "addresses": ["@localhost", "@example.org"]}},
    ) as h:
        mid = await h.submit(
            "me@example.org", content=CONTENT.replace(b"Message-ID: <dkim-1@example.org>\r\n", b"")
        )
        await h.finished(mid)
        (delivered,) = [m for m in await h.folder(FolderRole.INBOX) if b"on the way out" in m.content]
    content = delivered.content
    assert content.startswith(b"DKIM-Signature: ")
    h_tag = signature_tag(content, "h")
    # both tags and the Date and Message-ID that headers added were there to be signed (each listed where
    # it stands in the message, From once more at the end)
    assert sorted(h_tag.split(":")) == sorted(
        ["x-preprocessed-by", "x-preprocessed-by", "from", "subject", "date", "message-id", "from"]
    )
    assert dns.verify(content) == [True]


async def test_required_signing_returns_unsignable_mail_to_the_sender(
    tmp_path: Path, clock: FakeClock, rsa_file: Path
) -> None:
    async with spooler(
        tmp_path,
        clock,
        spooler={"preprocessors": ["headers", "dkim"]},
        preprocessors=dkim_section(("s1", rsa_file), required=True),
        stores={"local": {"provider": "sqlite", "addresses": ["@localhost"]}},
    ) as h:
        mid = await h.submit(
            "bob@localhost", content=b"From: me@localhost\r\nSubject: unsignable\r\n\r\nx\r\n"
        )
        await h.finished(mid)
        (r,) = (await h.message(mid)).recipients
        assert (r.state, r.last_status) == (RecipientState.FAILED, "5.7.1")
        assert "DKIM signing is required, but no key for the From domain localhost" in (r.last_text or "")
        inbox = await h.folder(FolderRole.INBOX)
    # nothing reached bob; the sender (me@localhost, same store) got the NDR
    assert [m.message_class for m in inbox] == ["REPORT.IPM.Note.NDR"]
    assert b"5.7.1" in inbox[0].content


def test_a_bad_key_or_a_stray_section_is_a_config_error(tmp_path: Path, rsa_file: Path) -> None:
    rsa_file.chmod(0o604)
    data: dict[str, Any] = {
        "spooler": {"state_dir": str(tmp_path / "state"), "preprocessors": ["headers", "dkim"]},
        "preprocessors": dkim_section(("s1", rsa_file)),
    }
    with pytest.raises(ConfigError) as caught:
        build(parse_config(data), PluginRegistry())
    assert caught.value.problems == [
        f"preprocessors.dkim.domains.example.org.0.key_file: {rsa_file} can be read or written by any user"
        " (mode 0604; chmod o-rwx it)"
    ]
    data["spooler"]["preprocessors"] = ["headers"]
    with pytest.raises(ConfigError, match=r"preprocessors\.dkim: configured, but 'dkim' is not in spooler"):
        parse_config(data)
    data["spooler"]["preprocessors"] = ["headers"]
    data["preprocessors"] = {"headers": {"domain": "x"}}
    with pytest.raises(ConfigError) as caught:
        build(
            parse_config(data | {"spooler": {**data["spooler"], "preprocessors": ["headers"]}}),
            PluginRegistry(),
        )
    assert caught.value.problems == ["preprocessors.headers: the preprocessor 'headers' takes no settings"]


def test_check_config_validates_the_keys(tmp_path: Path, rsa_file: Path) -> None:
    path = tmp_path / "spoolerd.toml"
    missing = tmp_path / "missing.key"
    path.write_text(
        f"""
[spooler]
state_dir = "{tmp_path / "state"}"
preprocessors = ["headers", "dkim"]
[control]
socket = "{tmp_path / "control.sock"}"
[preprocessors.dkim]
required = true
[preprocessors.dkim.domains."example.org"]
selector = "s1"
key_file = "{rsa_file}"
[preprocessors.dkim.domains."example.net"]
selector = "s2"
key_file = "{missing}"
"""
    )
    done = check_config(path)
    assert done.returncode == 78, done.stderr
    assert f"preprocessors.dkim.domains.example.net.key_file: cannot read {missing}" in done.stderr
    assert "example.org" not in done.stderr.replace("dkim key loaded", "")  # the good key is fine
    missing.write_bytes(rsa_file.read_bytes())
    missing.chmod(0o600)
    done = check_config(path)
    assert done.returncode == 0, done.stderr


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLERD")}
    return subprocess.run(
        [sys.executable, "-m", "spoolerd.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def postfix() -> Iterator[Postfix]:
    yield from running(mailboxes=["alice"])


@pytest.fixture
def keys(rsa_file: Path, ed_file: Path) -> tuple[Path, Path]:
    return rsa_file, ed_file


async def test_the_signature_survives_the_relay_hop_through_postfix(
    tmp_path: Path, clock: FakeClock, dns: Dns, keys: tuple[Path, Path], postfix: Postfix
) -> None:
    rsa_file, ed_file = keys
    relay = {
        "provider": "smtp",
        "host": "127.0.0.1",
        "port": postfix.port,
        "tls": "none",
        "helo": "spool.test",
    }
    marker = f"<dkim-{os.getpid()}-{id(clock)}@example.org>".encode()
    # LF line endings, a leading dot, 8-bit text, a line over 998 octets: what the wire and Postfix change
    content = (
        CONTENT.replace(b"<dkim-1@example.org>", marker).replace(b"\r\n", b"\n")
        + b".leading dot\nna\xc3\xafve caf\xc3\xa9\n"
        + b"a line no relay takes as it is: "
        + b"x" * 1200
        + b"\n"
    )
    async with spooler(
        tmp_path,
        clock,
        {"relay": relay},
        spooler={"preprocessors": ["headers", "dkim"]},
        preprocessors=dkim_section(("s1", rsa_file), ("e1", ed_file)),
    ) as h:
        mid = await h.submit("alice@test.local", content=content, sender="me@example.org")
        await h.spooler.flush(force=True)
        (r,) = (await h.message(mid)).recipients
        assert r.state is RecipientState.DELIVERED, r.last_text
    delivered = await anyio.to_thread.run_sync(postfix.wait_for_mail, "alice", 1)
    (copy,) = [d for d in delivered if marker in d]
    assert copy.startswith(b"Return-Path: <me@example.org>\n")  # Postfix's trace fields above ours
    assert b"DKIM-Signature: v=1; a=rsa-sha256" in copy and b"DKIM-Signature: v=1; a=ed25519-sha256" in copy
    wire = copy.replace(b"\n", b"\r\n")  # the Maildir copy has LF endings; verifiers read it as SMTP would
    assert dns.verify(wire) == [True, True]
    results = opendkim_results(dns, wire, tmp_path / "od")
    assert [r.split()[0] for r in results] == ["dkim=pass", "dkim=pass"]


async def test_a_reload_reads_the_keys_again_and_a_bad_one_changes_nothing(
    tmp_path: Path, clock: FakeClock, dns: Dns, rsa_file: Path
) -> None:
    path = tmp_path / "spoolerd.toml"

    def write(selector: str, key: Path) -> None:
        path.write_text(
            f"""
[spooler]
state_dir = "{tmp_path}"
reporting_mta = "spool.test"
preprocessors = ["headers", "dkim"]
[stores.local]
addresses = ["@localhost", "@example.org"]
[transports.loopback]
provider = "loopback"
[preprocessors.dkim.domains."example.org"]
selector = "{selector}"
key_file = "{key}"
"""
        )

    async def selector_used(h: Harness) -> str:
        mid = await h.submit("me@example.org", content=CONTENT)
        await h.finished(mid)
        content = (await h.message(mid)).content
        assert dns.verify(content) == [True]
        return signature_tag(content, "s")

    write("s1", rsa_file)
    async with spooler(
        tmp_path,
        clock,
        spooler={"preprocessors": ["headers", "dkim"]},
        preprocessors=dkim_section(("s1", rsa_file)),
        stores={"local": {"provider": "sqlite", "addresses": ["@localhost", "@example.org"]}},
    ) as h:
        h.daemon.source = str(path)
        assert await selector_used(h) == "s1"
        rotated = tmp_path / "s2.key"
        dns.publish("s2", "example.org", rsa_key(rotated))
        rotated.chmod(0o666)
        write("s2", rotated)
        with pytest.raises(ConfigError, match="can be read or written by any user"):
            await reload(h.daemon)
        assert await selector_used(h) == "s1"  # the running keys stay
        rotated.chmod(0o600)
        with capture_logs() as logs:
            await reload(h.daemon)
        assert [(e["selector"], e["bits"]) for e in logs if e["event"] == "dkim key loaded"] == [("s2", 2048)]
        assert await selector_used(h) == "s2"

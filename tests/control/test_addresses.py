"""Addresses as a null client completes them, against a real daemon and the real commands: bare names,
aliases, -f, garbage refused, bounce copies and verify, the same with the daemon up and down."""

from __future__ import annotations

import base64
import email
import json
import os
import pwd
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.control.conftest import Client, Daemon, serving, short_root
from tests.control.test_tools import ctl, inbox, run, sendmail

USER = pwd.getpwuid(os.getuid()).pw_name


def _extra(root: Path, settings: str) -> str:
    """Settings for the remote transport (its delivery log) and then whole sections."""
    return f'log_file = "{root / "remote.log"}"\n{settings}\n'


def remote_log(d: Daemon) -> list[str]:
    """Addresses the remote transport delivered to."""
    log = d.root / "remote.log"
    return [line.split()[1] for line in log.read_text().splitlines()] if log.exists() else []


async def cat(d: Daemon, message_id: object) -> bytes:
    return (await run(*ctl(d, "cat", str(message_id)), check=True)).stdout


async def queued(d: Daemon) -> list[dict[str, Any]]:
    return json.loads((await run(*ctl(d, "--json", "queue"), check=True)).stdout)  # type: ignore[no-any-return]


async def submit_with_sendmail(d: Daemon, *args: str, stdin: bytes, up: bool) -> int:
    argv, env = sendmail(d, *args)
    if not up:
        env["SPOOLERD_CONFIG"] = str(d.write_config())
    done = await run(*argv, stdin=stdin, env=env)
    return done.returncode


@pytest.mark.parametrize("up", [True, False], ids=["daemon-up", "daemon-down"])
async def test_echo_hi_to_root_lands_in_the_local_inbox(up: bool) -> None:
    d = Daemon(short_root(), _extra(short_root(), ""))
    if up:
        await d.start()
    assert await submit_with_sendmail(d, "root", stdin=b"hi\n", up=up) == 0
    if not up:
        await d.start()
    try:
        await run(*ctl(d, "offline", "loopback"), check=True)
        await run(*ctl(d, "online", "loopback"), check=True)
        with anyio.fail_after(30):
            while not await inbox(d):
                await run(*ctl(d, "flush"), check=True)
        (copy,) = await inbox(d)  # loopback: the local store owns @localhost, the default domain here
        content = await cat(d, copy["id"])
        parsed = email.message_from_bytes(content)
        assert parsed["From"] == f"{USER}@localhost"  # masqueraded, not user@<short hostname>
        assert content.split(b"\n\n", 1)[1] == b"hi\n"  # the body stayed the body: a blank line ends
        assert not parsed.defects and parsed.get_payload() == "hi\n"  # the header section before it
        assert parsed["Date"] and parsed["Message-ID"]
        assert copy["sender"] == f"{USER}@localhost"
        verified = json.loads((await run(*ctl(d, "--json", "verify", "root"), check=True)).stdout)
        assert verified[0]["address"] == "root@localhost"
    finally:
        assert await d.stop() == 0


ALIASES = """
[addresses]
default_domain = "corp.test"
[aliases]
root = ["alice@localhost", "ops"]
ops = "bob@remote.test"
"""


async def sent_items(d: Daemon) -> list[dict[str, Any]]:
    return json.loads((await run(*ctl(d, "--json", "ls", "sent"), check=True)).stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("up", [True, False], ids=["daemon-up", "daemon-down"])
async def test_an_alias_list_and_f_root(up: bool) -> None:
    root = short_root()
    d = Daemon(root, _extra(root, ALIASES))
    if up:
        await d.start()
    message = b"Subject: disk full\n\n/ is 99% full\n"
    args = ("-f", "root", "root", "Carol <carol@remote.test>")
    assert await submit_with_sendmail(d, *args, stdin=message, up=up) == 0
    if not up:
        await d.start()
    try:
        with anyio.fail_after(30):
            while not await sent_items(d):  # each flush waits for the attempts it starts
                await run(*ctl(d, "flush"), check=True)
        (sent,) = await sent_items(d)
        assert sent["sender"] == "root@corp.test"  # -f root: completed with the default domain
        assert sorted(remote_log(d)) == ["bob@remote.test", "carol@remote.test"]  # root -> ops -> bob
        (copy,) = await inbox(d)  # root -> alice@localhost
        parsed = email.message_from_bytes(await cat(d, copy["id"]))
        assert parsed["From"] == "root@corp.test" and parsed["Subject"] == "disk full"
    finally:
        assert await d.stop() == 0


@pytest.mark.parametrize("up", [True, False], ids=["daemon-up", "daemon-down"])
@pytest.mark.parametrize(
    ("args", "stdin", "reason"),
    [
        (("@localhost",), b"x", b"local part"),
        (("alice smith",), b"x", b"a space"),
        (("alice@",), b"x", b"domain"),
        (("-f", "bad@", "alice@localhost"), b"x", b"domain"),
        (("-t",), b"To: ok@localhost, <broken@\n\nx", b"without >"),
    ],
)
async def test_what_cannot_be_mail_is_refused_with_exit_65(
    up: bool, args: tuple[str, ...], stdin: bytes, reason: bytes
) -> None:
    d = Daemon(short_root())
    if up:
        await d.start()
        argv, env = sendmail(d, *args)
        done = await run(*argv, stdin=stdin, env=env)
    else:
        await d.start()  # the store exists ...
        assert await d.stop() == 0  # ... and no daemon answers
        argv, env = sendmail(d, *args)
        done = await run(*argv, stdin=stdin, env={**env, "SPOOLERD_CONFIG": str(d.write_config())})
        await d.start()
    try:
        assert done.returncode == 65, done.stderr
        assert done.stderr.startswith(b"spoolerd-sendmail: ") and reason in done.stderr
        assert await queued(d) == []  # nothing accepted, so nothing bounces later
        outbox = json.loads((await run(*ctl(d, "--json", "ls", "outbox"), check=True)).stdout)
        assert outbox == []
    finally:
        assert await d.stop() == 0


async def test_the_socket_refuses_bad_addresses_with_a_stable_code(daemon: Daemon) -> None:
    client = await daemon.client()
    message = base64.b64encode(b"Subject: x\n\nx\n").decode()
    for args in (
        {"recipients": ["@localhost"]},
        {"recipients": ["ok@localhost", "a@b@c"]},
        {"recipients": ["ok@localhost"], "sender": "<broken"},
        {"recipients": None, "message": base64.b64encode(b"To: (unclosed\n\nx").decode()},
    ):
        answer = await client.call("submit", **{"message": message, **args})
        assert not answer["ok"] and answer["error"]["code"] == "bad_address", answer
    answer = await client.call("submit", message=message, recipients=["Alice <alice>"], full_name="Me")
    assert answer["ok"], answer  # a bare name is completed: alice@localhost
    await run(*ctl(daemon, "flush"), check=True)
    (copy,) = await inbox(daemon)
    assert email.message_from_bytes(await cat(daemon, copy["id"]))["From"] == f'"Me" <{USER}@localhost>'


async def _new_mail(client: Client, count: int) -> list[dict[str, Any]]:
    events = []
    with anyio.fail_after(30):
        while len(events) < count:
            line = await client.line()
            event = line.get("event", {})
            if event.get("type") == "new_mail":
                events.append(event)
    return events


async def test_a_copy_of_each_bounce_goes_to_the_configured_address() -> None:
    root = short_root()
    d = Daemon(root, _extra(root, '[addresses]\nbounce_copy_to = "postmaster"'))
    async with serving(d):
        watch = await d.client()
        await watch.stream.send(b'{"id": "w", "cmd": "subscribe"}\n')
        argv, env = sendmail(d, "nobody@remote.test")  # the remote peer refuses it: 550 5.1.1
        await run(*argv, stdin=b"Subject: lost\n\nx\n", env=env, check=True)
        await _new_mail(watch, 2)  # the NDR in the sender's Inbox, and the postmaster's copy
        mail = await inbox(d)
        assert sorted(m["subject"] for m in mail) == ["Undelivered: lost", "Undelivered: lost"]
        contents = [await cat(d, m["id"]) for m in mail]
        assert contents[0] == contents[1] and b"nobody@remote.test" in contents[0]
        sent = json.loads((await run(*ctl(d, "--json", "ls", "sent"), check=True)).stdout)
        assert [m["subject"] for m in sent] == ["lost"]  # the copy is not kept in Sent Items
        assert await queued(d) == []


async def test_spoolerctl_verify() -> None:
    root = short_root()
    d = Daemon(root, _extra(root, ALIASES))
    async with serving(d):
        done = await run(*ctl(d, "--json", "verify", "root", "x@Remote.Test", "<@>"))
        assert done.returncode == 1  # one address cannot be mail
        first, second, third = json.loads(done.stdout)
        assert first["address"] == "root@corp.test" and first["aliased"]
        assert [r["address"] for r in first["recipients"]] == ["alice@localhost", "bob@remote.test"]
        alice, bob = first["recipients"]
        assert [(r["transport"], r["destination"]) for r in alice["routes"]] == [
            ("loopback", "store:local"),
            ("remote", "localhost"),
        ]
        assert [(r["transport"], r["destination"]) for r in bob["routes"]] == [
            ("loopback", "store:-"),
            ("remote", "remote.test"),
        ]
        assert second["address"] == "x@Remote.Test" and not second["aliased"]
        assert third["error"]["code"] == "bad_address"
        text = (await run(*ctl(d, "verify", "root"), check=True)).stdout.decode()
        assert text.splitlines() == [
            "root -> root@corp.test (aliased)",
            "  alice@localhost: loopback (store:local) then remote (localhost)",
            "  bob@remote.test: loopback (store:-) then remote (remote.test)",
        ]
        assert remote_log(d) == [] and await inbox(d) == []  # verify delivers nothing


PARTNER = """
[transports.partner]
provider = "test-scripted"
[sender_routes]
"@partner.test" = "partner"
"""


async def test_verify_routes_as_for_the_sender_given() -> None:
    """A transport [sender_routes] binds shows only for its senders: ``--from`` (sendmail -bv -f), else
    the caller's own address, as a submit would be routed."""
    root = short_root()
    d = Daemon(root, _extra(root, PARTNER))
    async with serving(d):

        async def routes(*args: str) -> list[str]:
            done = await run(*ctl(d, "--json", "verify", *args, "x@remote.test"), check=True)
            (entry,) = json.loads(done.stdout)
            return [r["transport"] for r in entry["recipients"][0]["routes"]]

        assert await routes() == ["loopback", "remote"]  # as the caller: no rule names it
        assert await routes("--from", "Ann <ann@Partner.Test>") == ["loopback", "remote", "partner"]
        assert await routes("--from", "ann@other.test") == ["loopback", "remote"]
        argv, env = sendmail(d, "-bv", "-f", "ann@partner.test", "x@remote.test")
        done = await run(*argv, env=env)
        assert done.returncode == 0, done.stderr
        assert b"remote (remote.test) then partner" in done.stdout
        bad = await run(*ctl(d, "verify", "--from", "<@>", "x@remote.test"))
        assert bad.returncode != 0 and b"bad_address" in bad.stderr + bad.stdout


async def test_bsd_mailx_to_root_reaches_the_people_root_is_aliased_to() -> None:
    """bsd-mailx runs ``sendmail -i -t`` with ``To: root``: the way cron and scripts mail root."""
    if not shutil.which("bsd-mailx"):
        if os.environ.get("SPOOLERD_REQUIRE_PEERS"):
            pytest.fail("bsd-mailx is not installed")
        pytest.skip("bsd-mailx is not installed")  # .ci/run installs it
    root = short_root()
    d = Daemon(root, _extra(root, '[aliases]\nroot = ["alice@localhost", "bob@remote.test"]'))
    wrapper = root / "sendmail"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m spoolerd.sendmail "$@"\n')
    wrapper.chmod(0o755)
    (root / "mailrc").write_text(f"set sendmail={wrapper}\n")
    env = {"MAILRC": str(root / "mailrc"), "SPOOLERD_SOCKET": str(d.socket)}
    async with serving(d):
        done = await run("bsd-mailx", "-s", "disk full", "root", stdin=b"/ is 99% full\n", env=env)
        assert done.returncode == 0, done.stderr
        with anyio.fail_after(30):
            while not await sent_items(d):
                await run(*ctl(d, "flush"), check=True)
        assert remote_log(d) == ["bob@remote.test"]
        (copy,) = await inbox(d)
        content = await cat(d, copy["id"])
        parsed = email.message_from_bytes(content)
        assert parsed["To"] == "root@localhost"  # completed in the header too, not just the envelope
        assert parsed["From"] == f"{USER}@localhost" and parsed["Subject"] == "disk full"
        assert parsed.get_payload() == "/ is 99% full\n"


LISTS = """
[lists]
"loop1@remote.test" = ["loop2@remote.test", "ann@remote.test"]
"loop2@remote.test" = ["loop1@remote.test", '"Bee Bee" <bee@remote.test>', "ann@Remote.Test"]
"""


class NoPreprocessing(Daemon):
    def write_config(self) -> Path:
        cfg = super().write_config()
        text = cfg.read_text().replace("[spooler]\n", "[spooler]\npreprocessors = []\n", 1)
        cfg.write_text(text)
        return cfg


@pytest.mark.parametrize("up", [True, False], ids=["daemon-up", "daemon-down"])
async def test_recipients_are_expanded_and_deduplicated_at_submit(up: bool) -> None:
    """Seed 004: SubmitMessage expands personal distribution lists and removes duplicates (ExpandRecips)
    before NEEDS_PREPROCESSING is decided, so it happens with no preprocessing configured too, on the
    socket and on sendmail's own path: a cyclic list reaches its members once and never a list
    address; an address met again (the domain in another case, another display name) is one recipient
    with the first display name."""
    root = short_root()
    d = NoPreprocessing(root, _extra(root, LISTS))
    if up:
        await d.start()
    message = b'To: bob@remote.test, "B" <bob@Remote.Test>, loop1@remote.test\nSubject: lists\n\nhi\n'
    assert await submit_with_sendmail(d, "-t", stdin=message, up=up) == 0
    if not up:
        await d.start()
    try:
        with anyio.fail_after(30):
            while not await sent_items(d):
                await run(*ctl(d, "flush"), check=True)
        assert sorted(remote_log(d)) == ["ann@Remote.Test", "bee@remote.test", "bob@remote.test"]
    finally:
        assert await d.stop() == 0

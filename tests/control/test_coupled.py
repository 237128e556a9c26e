"""The tightly coupled store on the default config (seed 004, #18 part 3) and a download flushed through
the spooler (seed 000, #18 part 1), against a real daemon (on uvloop, the daemon's loop).

The store ``local`` is coupled to ``mine``, a scripted transport for ``coupled.test`` configured after
``remote``, which serves every SMTP address: normal routing would give ``coupled.test`` to ``remote``;
only the coupled store's first chance gives it to ``mine``. The default ``headers`` preprocessor is on.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import anyio

from tests.control.conftest import Client, Daemon, serving, short_root
from tests.control.test_tools import ctl, inbox, run


class CoupledDaemon(Daemon):
    def write_config(self) -> Path:
        cfg = super().write_config()
        store = 'addresses = ["@localhost"]\n'
        cfg.write_text(cfg.read_text().replace(store, store + 'coupled_transport = "mine"\n', 1))
        (self.root / "copies").mkdir(exist_ok=True)
        return cfg

    def transports(self) -> str:
        return f"""
[transports.remote]
provider = "test-scripted"
log_file = "{self.root / "remote.log"}"
[transports.mine]
provider = "test-scripted"
accept_domains = ["coupled.test"]
temp_fail = ["busy@coupled.test"]
log_file = "{self.root / "mine.log"}"
copy_dir = "{self.root / "copies"}"
[transports.pull]
provider = "test-pull"
drop_dir = "{self.drop}"
[sender_routes]
"vip@localhost" = "mine"
"""

    def delivered(self, transport: str) -> list[str]:
        """``message-id address`` per recipient ``transport`` delivered."""
        log = self.root / f"{transport}.log"
        return log.read_text().splitlines() if log.exists() else []


async def submit(c: Client, sender: str, *to: str) -> Any:
    # no Date and no Message-ID: the headers preprocessor adds them
    content = f"From: {sender}\nTo: {', '.join(to)}\nSubject: coupled\n\nbody\n".encode()
    return await c.ok("submit", message=base64.b64encode(content).decode(), sender=sender)


async def events_until(watcher: Client, message_id: str, kinds: set[str]) -> dict[str, Any]:
    """The delivery events of ``message_id``, by type, once each of ``kinds`` has come."""
    seen: dict[str, Any] = {}
    with anyio.fail_after(30):
        while not kinds <= set(seen):
            event = (await watcher.line())["event"]
            if event.get("id") == message_id:
                seen[event["type"]] = event
    return seen


async def test_coupled_store_takes_its_recipients_after_preprocessing() -> None:
    """Seed 004: NEEDS_PREPROCESSING queues the message and submit returns (queued); the spooler runs
    the preprocessors and submits again; the coupled store's transport then takes the recipients it
    serves (RESPONSIBILITY TRUE), the spooler sends the rest (CompleteMsg); the coupled transport's
    deferral raises a ``deferred`` event and logs its line, and waits for the normal retry schedule. A
    sender that [sender_routes] sends elsewhere is not taken by the coupled transport."""
    async with serving(CoupledDaemon(short_root())) as daemon:
        watcher = await daemon.client()
        await watcher.stream.send(b'{"id": "w", "cmd": "subscribe"}\n')
        with anyio.fail_after(10):
            assert (await watcher.line())["event"]["type"] == "subscribed"
        c = await daemon.client()
        answer = await submit(c, "vip@localhost", "a@coupled.test", "busy@coupled.test", "far@remote.test")
        mid = answer["id"]
        assert answer["queued"] is True  # NEEDS_PREPROCESSING: nothing handled inside submit
        events = await events_until(watcher, mid, {"delivered", "deferred"})
        assert sorted(d["recipient"] for d in events["delivered"]["details"]) == [
            "a@coupled.test", "far@remote.test",
        ]  # fmt: skip
        (deferral,) = events["deferred"]["details"]
        assert (deferral["recipient"], deferral["transport"], deferral["status"]) == (
            "busy@coupled.test", "mine", "4.3.0",
        )  # fmt: skip
        assert deferral["next_attempt"] > time.time() + 30  # the normal schedule, not at once
        assert daemon.delivered("mine") == [f"{mid} a@coupled.test"]  # the coupled store's share
        assert daemon.delivered("remote") == [f"{mid} far@remote.test"]  # the rest, by the spooler
        copy = (daemon.root / "copies" / mid).read_bytes()
        assert b"Message-ID: <" in copy and b"Date: " in copy  # preprocessed before the coupled send
        await daemon.log_line(
            lambda line: b'"recipient": "busy@coupled.test"' in line and b'"status": "deferred"' in line
        )
        (row,) = json.loads((await run(*ctl(daemon, "--json", "queue"), check=True)).stdout)
        assert row["id"] == mid and row["due_at"] > time.time() + 30

        # [sender_routes] binds mine to vip@localhost: another sender's coupled.test mail is not its
        other = (await submit(c, "other@localhost", "b@coupled.test"))["id"]
        await events_until(watcher, other, {"delivered"})
        assert daemon.delivered("remote")[-1] == f"{other} b@coupled.test"
        assert daemon.delivered("mine") == [f"{mid} a@coupled.test"]


async def test_flush_download_of_a_transport_without_flush_goes_through_the_spooler() -> None:
    """Seed 000, second procedure: a transport whose status row lacks FLUSH_QUEUES is flushed by the
    spooler's FlushQueues with it as the target transport: its download runs now, and the answer
    counts what was received."""
    async with serving(CoupledDaemon(short_root())) as daemon:
        for n in range(3):
            (daemon.drop / f"{n}.eml").write_bytes(f"From: far@remote.test\nSubject: in {n}\n\nx\n".encode())
        flush = ctl(daemon, "--json", "flush", "--download", "--transport", "pull")
        counts = json.loads((await run(*flush, check=True)).stdout)
        assert counts["received"] == 3
        assert list(daemon.drop.iterdir()) == []  # acknowledged only after the local commit
        assert sorted(str(m["subject"]) for m in await inbox(daemon)) == ["in 0", "in 1", "in 2"]
        assert json.loads((await run(*flush, check=True)).stdout)["received"] == 0  # nothing waits
        rows = {
            r["name"]: r for r in json.loads((await run(*ctl(daemon, "--json", "status"), check=True)).stdout)
        }
        assert "flush" not in rows["pull"]["methods"]

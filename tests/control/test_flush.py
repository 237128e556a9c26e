"""``spoolerctl flush`` as ``postqueue -f`` (#12 part 5), against a real daemon: a plain flush (and
``flush ID``) sends deferred mail that is not due yet, skips held mail and mail whose deferred send time
is ahead, and prints why each recipient still waits."""

from __future__ import annotations

import base64
import json
import time

from tests.control.conftest import Daemon, serving, short_root
from tests.control.test_tools import ctl, run, sendmail


async def test_plain_flush_sends_deferred_mail_and_says_why_the_rest_waits() -> None:
    extra = 'temp_fail = ["later@remote.test", "busy@remote.test"]\ntemp_fail_times = 1\n'
    async with serving(Daemon(short_root(), extra=extra)) as daemon:
        argv, env = sendmail(daemon, "later@remote.test")
        await run(*argv, stdin=b"Subject: first try defers\n\nx\n", env=env, check=True)
        (row,) = json.loads((await run(*ctl(daemon, "--json", "queue"), check=True)).stdout)
        while row["recipients"] is None or row["recipients"][0]["state"] != "deferred":  # the first try
            await run(*ctl(daemon, "flush", row["id"]), check=True)
            (row,) = json.loads((await run(*ctl(daemon, "--json", "queue"), check=True)).stdout)
        assert row["due_at"] > time.time() + 60  # deferred for minutes: not due
        # what a flush leaves alone: a held message, and one whose deferred send time is ahead
        c = await daemon.client()
        await c.ok("offline", transport="remote")  # nothing goes before it is held
        held = (await c.ok("submit", message=base64.b64encode(b"To: held@remote.test\n\nx\n").decode()))["id"]
        await c.ok("hold", id=held)
        later = base64.b64encode(b"To: tomorrow@remote.test\n\nx\n").decode()
        await c.ok("submit", message=later, not_before=time.time() + 86400)
        waits = await c.ok("submit", message=base64.b64encode(b"To: busy@remote.test\n\nx\n").decode())
        printed = (await run(*ctl(daemon, "flush"), check=True)).stdout.decode().splitlines()
        # the deferred one is not due, and remote is offline: it waits too, and the answer says why
        assert printed[0] == "sent=0 deferred=2 failed=0 received=0"
        assert sorted(printed[1:]) == sorted(
            [
                f"{row['id']}  later@remote.test  deferred: 4.3.2 transport remote is offline",
                f"{waits['id']}  busy@remote.test  deferred: 4.3.2 transport remote is offline",
            ]
        )
        await c.ok("online", transport="remote")
        one = json.loads((await run(*ctl(daemon, "--json", "flush", row["id"]), check=True)).stdout)
        assert (one["sent"], one["deferred"], one["deferrals"]) == (1, 0, [])  # flush ID: that message
        rest = json.loads((await run(*ctl(daemon, "--json", "flush"), check=True)).stdout)
        assert (rest["sent"], rest["deferred"]) == (0, 1)  # busy@ defers once more (451)
        (why,) = rest["deferrals"]
        assert (why["id"], why["recipient"], why["code"], why["status"]) == (
            waits["id"], "busy@remote.test", 451, "4.3.0",
        )  # fmt: skip
        assert (await run(*ctl(daemon, "--json", "flush"), check=True)).stdout.count(b'"sent": 1') == 1
        queue = json.loads((await run(*ctl(daemon, "--json", "queue"), check=True)).stdout)
        assert sorted(r["recipients"][0]["address"] for r in queue) == [
            "held@remote.test", "tomorrow@remote.test",
        ]  # fmt: skip
        assert held in {r["id"] for r in queue}


async def test_flush_help_says_what_force_adds(daemon: Daemon) -> None:
    shown = (await run(*ctl(daemon, "flush", "--help"), check=True)).stdout.decode()
    assert "--force" in shown and "every message makes its own attempt" in shown

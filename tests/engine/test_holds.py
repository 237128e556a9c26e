"""Messages waiting for a held destination (spoolerd/delivery/holds.py), in memory."""

from __future__ import annotations

from typing import Any, cast

from spoolerd.delivery.holds import Holds, waits_for
from spoolerd.store import MessageStore
from spoolerd.transport import Outcome, Tried


def store(name: str) -> MessageStore:
    class Named:
        pass

    named: Any = Named()
    named.name = name
    return cast(MessageStore, named)


def test_a_message_waits_for_a_destination_only_if_every_deferral_is_behind_it() -> None:
    held = Outcome.deferred("held", None, "4.4.1")
    other = Outcome.deferred("mailbox busy", 450, "4.2.0")
    assert (
        waits_for({0: Tried("relay", held), 1: Tried("relay", held)}, {0: "relay:a", 1: "relay:a"})
        == "relay:a"
    )
    assert (
        waits_for({0: Tried("relay", held), 1: Tried("relay", Outcome.delivered())}, {0: "relay:a"})
        == "relay:a"
    )
    assert waits_for({0: Tried("relay", held), 1: Tried("relay", other)}, {0: "relay:a"}) is None
    assert waits_for({0: Tried("relay", held), 1: Tried("relay", held)}, {0: "relay:a", 1: "relay:b"}) is None
    assert waits_for({0: Tried("relay", Outcome.delivered())}, {}) is None


def test_holds_follow_each_message_to_what_it_waits_for_now() -> None:
    holds, local, team = Holds(), store("local"), store("team")
    holds.wait(local, "1", "relay:a")
    holds.wait(local, "2", "relay:a")
    holds.wait(team, "1", "relay:a")
    holds.wait(local, "10", "relay:b")
    assert holds.waiting("relay:a") == [(local, ["1", "2"]), (team, ["1"])]
    holds.wait(local, "2", "relay:b")  # deferred behind another destination since
    holds.wait(team, "1", None)  # delivered, or deferred for a reason of its own
    assert holds.waiting("relay:a") == [(local, ["1"])]
    assert holds.waiting("relay:b") == [(local, ["2", "10"])]
    holds.forget("relay:b")
    assert holds.waiting("relay:b") == [] and holds.destinations() == ["relay:a"]
    holds.wait(local, "2", "relay:a")  # forgotten cleanly: it can wait again
    assert holds.waiting("relay:a") == [(local, ["1", "2"])]

"""The relays' state and one attempt across them, in memory: the order relays are tried in, their
holds, and that every recipient ends with one outcome from the relays it was handed to."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from spoolerd.transport import Outcome, OutcomeKind
from transports.smtp.relays import Attempt, Delivery, Relays

DELIVERED, DEFERRED, FAILED = OutcomeKind.DELIVERED, OutcomeKind.DEFERRED, OutcomeKind.FAILED


def test_relays_order_hold_and_recovery() -> None:
    r = Relays(["a", "b", "c"], hold=10.0)
    assert r.order(0.0) == ["a", "b", "c"]
    assert r.failed("a", 0.0, "refused") and not r.failed("a", 5.0, "refused again")  # one change
    assert r.order(5.0) == ["b", "c"]
    assert r.order(14.9) == ["b", "c"] and r.order(15.0) == ["a", "b", "c"]  # held from the last failure
    r.failed("b", 15.0, "x")
    r.failed("c", 15.0, "x")
    r.failed("a", 15.0, "x")
    assert r.order(16.0) == ["a", "b", "c"]  # all held: all tried, in order
    assert r.answered("a") == 0.0 and r.answered("a") is None
    assert [row["state"] for row in r.rows(16.0)] == ["up", "down", "down"]


def outcome(kind: str, relay: str) -> Outcome:
    if kind == "sent":
        return Outcome(DELIVERED, 250, "2.0.0", f"{relay} said: 250", relay=relay)
    if kind == "refused":
        return Outcome(FAILED, 550, "5.1.1", f"{relay} said: 550", relay=relay)
    if kind == "busy":
        return Outcome(DEFERRED, 451, "4.3.0", f"{relay} said: 451", relay=relay)
    return Outcome(DEFERRED, None, "4.4.1", f"{relay}: cannot connect", relay=relay)


@st.composite
def relays_and_answers(draw: st.DrawFn) -> tuple[int, list[tuple[bool, list[str]]]]:
    """Recipients, and per relay: whether it is down, and what it would answer each recipient."""
    count = draw(st.integers(1, 6))
    table = []
    for _ in range(draw(st.integers(1, 4))):
        down = draw(st.booleans())
        kinds = st.just("lost") if down else st.sampled_from(["sent", "refused", "busy", "lost"])
        table.append((down, draw(st.lists(kinds, min_size=count, max_size=count))))
    return count, table


@settings(max_examples=500, deadline=None)
@given(relays_and_answers())
def test_an_attempt_hands_on_only_deferrals_and_ends_with_one_outcome_each(
    case: tuple[int, list[tuple[bool, list[str]]]],
) -> None:
    count, table = case
    several = len(table) > 1
    attempt = Attempt(count, several=several)
    given_to: list[list[int]] = [[] for _ in range(count)]  # per recipient, the relays it was handed to
    for r, (down, kinds) in enumerate(table):
        if not attempt.waiting:
            break
        for i in attempt.waiting:
            given_to[i].append(r)
        answers = [outcome(kinds[i], f"relay{r}") for i in attempt.waiting]
        attempt.tried(Delivery(answers, outcome("lost", f"relay{r}") if down else None))
    final = attempt.outcomes()
    assert len(final) == count
    tried_relays = {r for relays in given_to for r in relays}
    every_one_down = all(table[r][0] for r in tried_relays)
    for i, o in enumerate(final):
        relays = given_to[i]
        assert relays[0] == 0 and relays == sorted(relays)
        answers = [table[r][1][i] for r in relays]
        assert all(a in ("busy", "lost") for a in answers[:-1])  # handed on only when deferred
        if answers[-1] in ("sent", "refused"):
            assert o == outcome(answers[-1], f"relay{relays[-1]}")  # the relay that decided
        elif not several:
            assert o == outcome(answers[-1], "relay0")
        elif every_one_down:  # the spooler holds the list: no code, no one relay named, every reason
            assert (o.kind, o.code, o.relay) == (DEFERRED, None, None)
            assert all(f"relay{r}" in o.diagnostic for r in relays)
        elif "busy" in answers:  # the last reply a relay gave about it
            last = max(j for j, a in enumerate(answers) if a == "busy")
            assert o == outcome("busy", f"relay{relays[last]}")
        else:
            assert o == outcome("lost", f"relay{relays[-1]}")

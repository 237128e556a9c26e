"""The tightly coupled store's share (seed 004: the recipients its transport takes, RESPONSIBILITY TRUE)
is one fact on both paths: what ``coupled_share`` hands over inside submit is exactly what routing gives
the coupled transport when the spooler submits again after preprocessing (``first_chance``), for any
recipients, transports and [sender_routes]."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spoolerd.message import Recipient, RecipientKind, RecipientState
from spoolerd.routing import SenderRoutes, coupled_share, first_chance, route

TYPES = ["SMTP", "smtp", "X400", "FAX"]
NAMES = ["loopback", "relay", "mine", "fax"]
SENDERS = ["vip@localhost", "me@localhost", "boss@example.org"]

types = st.none() | st.frozensets(st.sampled_from(TYPES), max_size=3)
transports = st.lists(
    st.tuples(st.sampled_from(NAMES), types), min_size=1, max_size=4, unique_by=lambda t: t[0]
)
recipients = st.lists(
    st.tuples(st.sampled_from(TYPES), st.sampled_from(list(RecipientState))), max_size=6
).map(
    lambda items: [
        Recipient(i, f"r{i}@x.test", "", address_type, RecipientKind.TO, state=state)
        for i, (address_type, state) in enumerate(items)
    ]
)
rules = st.dictionaries(st.sampled_from([*SENDERS, "@localhost", "*"]), st.sampled_from(NAMES), max_size=3)


@given(transports, recipients, rules, st.sampled_from(SENDERS), st.data())
def test_the_share_at_submit_is_what_the_first_chance_routes_to_it(
    configured: list[tuple[str, frozenset[str] | None]],
    rcpts: list[Recipient],
    rule_map: dict[str, str],
    sender: str,
    data: st.DataObject,
) -> None:
    coupled = data.draw(st.sampled_from(configured))
    routes = SenderRoutes(rule_map)
    pending = [r for r in rcpts if not r.state.final]
    plan = route(pending, first_chance(routes.eligible(sender, configured), coupled[0]))
    share = coupled_share(sender, rcpts, coupled, routes)
    assert share == plan.by_transport.get(coupled[0], [])
    if not routes.eligible(sender, [coupled]):
        assert share == []  # a sender routed elsewhere is never the coupled transport's


@given(st.lists(st.sampled_from(NAMES), unique=True), st.sampled_from([*NAMES, None]))
def test_first_chance_only_moves_the_coupled_transport(names: list[str], coupled: str | None) -> None:
    ordered = [name for name, _ in first_chance([(n, None) for n in names], coupled)]
    assert sorted(ordered) == sorted(names)
    assert [n for n in ordered if n != coupled] == [n for n in names if n != coupled]
    if coupled in names:
        assert ordered[0] == coupled

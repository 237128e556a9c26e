"""The SMTP transaction planner in memory: any replies a relay may give, in any mode, end in exactly one
outcome per recipient; pipelined and step-by-step sessions decide alike; what is written follows SMTP."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from spoolerd.dsn_params import Notify, RecipientDsn, Ret
from spoolerd.listener.commands import parse_mail, parse_rcpt
from spoolerd.transport import OutcomeKind
from transports.smtp.plan import Batches, EnvelopeDsn, Result, Step, TransactionPlan
from transports.smtp.replies import requirements
from transports.smtp.wire import Payload

CODES = [220, 221, 250, 251, 354, 421, 450, 451, 452, 500, 503, 550, 552, 554]
WIRE = b"Subject: x\r\n\r\n.dot\r\nbody\r\n"
PEER = "relay.test:25"


@dataclass
class Script:
    """What the relay answers to each command (the same whatever the mode)."""

    mail: int
    rcpts: list[int]
    data: int
    end: int
    rset: int


@st.composite
def scripts(draw: st.DrawFn, max_rcpts: int = 6) -> Script:
    codes = st.sampled_from(CODES)
    common = st.sampled_from([250, 250, 250, 354, 452, 550, 450, 421])
    pick = st.one_of(codes, common)
    n = draw(st.integers(1, max_rcpts))
    return Script(
        mail=draw(pick),
        rcpts=draw(st.lists(pick, min_size=n, max_size=n)),
        data=draw(st.sampled_from([354, 354, 354, 250, 451, 554, 503])),
        end=draw(pick),
        rset=draw(st.sampled_from([250, 250, 421, 500])),
    )


@dataclass
class Run:
    result: Result
    writes: list[bytes]
    expected: list[str]


def plan(
    script: Script, *, pipelining: bool, reused: bool = False, ext: dict[str, str] | None = None
) -> TransactionPlan:
    rcpts = [f"r{i}@example.net" for i in range(len(script.rcpts))]
    extensions = {"size": "0", "8bitmime": ""} if ext is None else ext
    return TransactionPlan(
        "me@example.org",
        rcpts,
        Payload(WIRE),
        requirements(WIRE, "me@example.org", rcpts),
        extensions=extensions,
        pipelining=pipelining,
        peer=PEER,
        reused=reused,
    )


def drive(p: TransactionPlan, script: Script, break_after: int | None = None) -> Run:
    writes: list[bytes] = []
    expected: list[str] = []
    rcpt = 0
    step = p.start()
    while isinstance(step, Step):
        assert len(expected) < 3 * len(script.rcpts) + 10, "the plan does not end"
        writes.append(step.write + step.end)
        if break_after is not None and len(expected) == break_after:
            return Run(p.broken("connection lost", "4.4.2", lost=True), writes, expected)
        expected.append(step.expect)
        if step.expect == "RCPT TO":
            code, rcpt = script.rcpts[rcpt], rcpt + 1
        else:
            code = {"MAIL FROM": script.mail, "DATA": script.data, "end of DATA": script.end}.get(
                step.expect, script.rset
            )
        step = p.receive(code, f"{code // 100}.0.0 scripted")
    return Run(step, writes, expected)


def summary(result: Result) -> list[tuple[OutcomeKind, int | None, str | None, str]]:
    return [(o.kind, o.code, o.status, o.diagnostic) for o in result.outcomes]


@settings(max_examples=400, deadline=None)
@given(scripts(), st.booleans(), st.booleans(), st.one_of(st.none(), st.integers(0, 12)))
def test_every_recipient_gets_exactly_one_outcome(
    script: Script, pipelining: bool, reused: bool, break_after: int | None
) -> None:
    run = drive(plan(script, pipelining=pipelining, reused=reused), script, break_after)
    if run.result.stale:  # a reused connection that was gone: nothing decided, tried again fresh
        assert reused and run.result.outcomes == [] and not run.result.reusable
        return
    assert len(run.result.outcomes) == len(script.rcpts)
    assert all(
        o.kind in (OutcomeKind.DELIVERED, OutcomeKind.DEFERRED, OutcomeKind.FAILED)
        for o in run.result.outcomes
    )
    assert run.result.too_many <= {i for i, c in enumerate(script.rcpts) if c == 452}


@settings(max_examples=400, deadline=None)
@given(scripts())
def test_pipelined_and_step_by_step_decide_alike(script: Script) -> None:
    pipelined = drive(plan(script, pipelining=True), script)
    stepwise = drive(plan(script, pipelining=False), script)
    assert summary(pipelined.result) == summary(stepwise.result)
    assert pipelined.result.too_many == stepwise.result.too_many


@settings(max_examples=400, deadline=None)
@given(scripts(), st.booleans())
def test_delivered_only_through_every_step(script: Script, pipelining: bool) -> None:
    run = drive(plan(script, pipelining=pipelining), script)
    through = script.mail == 250 and script.data == 354 and script.end == 250
    for code, outcome in zip(script.rcpts, run.result.outcomes, strict=True):
        delivered = through and code in (250, 251)
        assert (outcome.kind is OutcomeKind.DELIVERED) == delivered
        if 500 <= code < 600 and script.mail == 250:
            assert outcome.kind is OutcomeKind.FAILED and outcome.code == code  # its own RCPT reply
        if 500 <= script.mail < 600:
            assert outcome.kind is OutcomeKind.FAILED and "MAIL FROM" in outcome.diagnostic


@settings(max_examples=400, deadline=None)
@given(scripts(), st.booleans(), st.one_of(st.none(), st.integers(0, 12)))
def test_what_is_written(script: Script, pipelining: bool, break_after: int | None) -> None:
    run = drive(plan(script, pipelining=pipelining), script, break_after)
    payloads = [w for w in run.writes if w.endswith(b"\r\n.\r\n") and b"Subject" in w]
    accepted = any(c in (250, 251) for c in script.rcpts) and script.mail == 250
    assert len(payloads) <= 1
    if payloads:
        assert accepted and script.data == 354 and payloads[0] == b"Subject: x\r\n\r\n..dot\r\nbody\r\n.\r\n"
    first = run.writes[0]
    assert first.startswith(b"MAIL FROM:<me@example.org> SIZE=")
    if pipelining:  # MAIL, every RCPT and DATA in one write
        assert first.count(b"RCPT TO:") == len(script.rcpts) and first.endswith(b"DATA\r\n")
    else:
        assert all(w.count(b"\r\n") <= 1 or w in payloads for w in run.writes)
    if run.result.reusable:  # kept only after a 250 that ends a transaction or a reset
        assert run.expected[-1] in ("end of DATA", "RSET")


def test_size_limit_and_eight_bit_decided_before_anything_is_sent() -> None:
    script = Script(250, [250], 354, 250, 250)
    big = plan(script, pipelining=True, ext={"size": "10"}).start()
    assert isinstance(big, Result) and big.reusable
    assert (big.outcomes[0].kind, big.outcomes[0].status) == (OutcomeKind.FAILED, "5.3.4")
    eight = b"Subject: x\r\n\r\ncaf\xc3\xa9\r\n"
    rcpts = ["a@example.net"]
    down = TransactionPlan(
        "me@example.org", rcpts, Payload(eight), requirements(eight, "me@example.org", rcpts),
        extensions={}, pipelining=False, peer=PEER,
    )  # fmt: skip
    step = down.start()
    assert isinstance(step, Step) and step.write == b"MAIL FROM:<me@example.org>\r\n"  # no BODY=8BITMIME
    assert down.payload.content.isascii() and b"quoted-printable" in down.payload.content.lower()


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 30),
    st.integers(1, 8),
    st.lists(st.frozensets(st.integers(0, 7)), max_size=40),
)
def test_batches_give_every_recipient_one_outcome(
    count: int, limit: int, refusals: list[frozenset[int]]
) -> None:
    from spoolerd.transport import Outcome

    batches = Batches(count, limit)
    seen: list[int] = []
    rounds = 0
    while (batch := batches.next()) is not None:
        rounds += 1
        assert 0 < len(batch) <= limit and rounds <= count
        too_many = frozenset(
            j for j in (refusals[rounds % len(refusals)] if refusals else ()) if j < len(batch)
        )
        outcomes = [
            Outcome.deferred("452", 452) if j in too_many else Outcome.delivered() for j in range(len(batch))
        ]
        batches.done(batch, Result(outcomes, too_many=too_many))
        seen.extend(batch)
    assert len(batches.outcomes()) == count and set(seen) == set(range(count))


_envids = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=100)
_orcpts = st.builds(
    lambda local, kind: f"{kind};{local}@example.net",
    st.text(st.characters(min_codepoint=0x20, exclude_categories=("Cc", "Cs")), min_size=1, max_size=30),
    st.sampled_from(["rfc822", "RFC822", "x-local"]),
)
_notifies = st.none() | st.sampled_from(
    [
        Notify.NEVER,
        Notify.SUCCESS,
        Notify.FAILURE | Notify.DELAY,
        Notify.SUCCESS | Notify.FAILURE | Notify.DELAY,
    ]
)


@st.composite
def envelope_dsns(draw: st.DrawFn, count: int) -> EnvelopeDsn:
    asked = [RecipientDsn(draw(_notifies), draw(st.none() | _orcpts)) for _ in range(count)]
    return EnvelopeDsn(draw(st.none() | st.sampled_from(list(Ret))), draw(st.none() | _envids), tuple(asked))


@settings(max_examples=300, deadline=None)
@given(st.data(), scripts(), st.booleans(), st.booleans())
def test_dsn_parameters_go_only_to_a_relay_that_offers_dsn_and_read_back_the_same(
    data: st.DataObject, script: Script, pipelining: bool, offered: bool
) -> None:
    """What the plan writes is read back by an RFC 3461 reader (the listener's own parser) as the
    parameters given; to a relay without DSN, none of them is written."""
    dsn = data.draw(envelope_dsns(len(script.rcpts)))
    rcpts = [f"r{i}@example.net" for i in range(len(script.rcpts))]
    ext = {"size": "0", "8bitmime": ""} | ({"dsn": ""} if offered else {})
    p = TransactionPlan(
        "me@example.org", rcpts, Payload(WIRE), requirements(WIRE, "me@example.org", rcpts),
        extensions=ext, pipelining=pipelining, peer=PEER, dsn=dsn,
    )  # fmt: skip
    accept = Script(250, [250] * len(rcpts), 354, 250, 250)
    commands = b"".join(drive(p, accept).writes).split(b"\r\n")
    mail = next(c for c in commands if c.startswith(b"MAIL FROM:")).decode("ascii")
    rcpt_lines = [c.decode("ascii") for c in commands if c.startswith(b"RCPT TO:")]
    assert len(rcpt_lines) == len(rcpts)
    parsed = parse_mail(mail[5:], size_limit=10**9, utf8_offered=False)
    assert (parsed.ret, parsed.envid) == ((dsn.ret, dsn.envid) if offered else (None, None))
    for line, asked in zip(rcpt_lines, dsn.recipients, strict=True):
        back = parse_rcpt(line[5:], smtputf8=False)
        assert (back.notify, back.orcpt) == ((asked.notify, asked.orcpt) if offered else (None, None))
    if not offered:
        assert not any(word in c for c in commands for word in (b"RET=", b"ENVID=", b"NOTIFY=", b"ORCPT="))

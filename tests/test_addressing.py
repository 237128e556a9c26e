"""The address rules with no I/O: parsing like Postfix, completion, aliases, dedupe, and the one function
every submission path applies (``submit_rules.complete_submission``)."""

from __future__ import annotations

import os
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spoolerd.addressing import (
    AddressPolicy,
    Mailbox,
    complete,
    expand_aliases,
    format_mailbox,
    parse_address,
    parse_address_list,
)
from spoolerd.config import parse_config
from spoolerd.envelope import has_field, header_recipients, map_fields, with_field
from spoolerd.errors import BadAddress, ConfigError, InvalidArgument, NoRecipients
from spoolerd.submit_rules import SubmissionRequest, complete_submission, default_domain, local_sender


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("root", [("root", "")]),
        ("a@b.org", [("a@b.org", "")]),
        ("<a@b.org>", [("a@b.org", "")]),
        ("Alice Smith <alice@example.org>", [("alice@example.org", "Alice Smith")]),
        ('"Smith, Alice" <alice@example.org>', [("alice@example.org", "Smith, Alice")]),
        ("a@b.org, c@d.org", [("a@b.org", ""), ("c@d.org", "")]),
        ("a@b.org,,  ,c@d.org", [("a@b.org", ""), ("c@d.org", "")]),
        ("root (Cron Daemon)", [("root", "Cron Daemon")]),
        ("alice@example.org (Alice (the first))", [("alice@example.org", "Alice (the first)")]),
        ('"john doe"@example.org', [('"john doe"@example.org', "")]),
        ('"john"@example.org', [("john@example.org", "")]),
        ('"a\\"b"@example.org', [('"a\\"b"@example.org', "")]),
        ("team: a@b.org, c@d.org;, e@f.org", [("a@b.org", ""), ("c@d.org", ""), ("e@f.org", "")]),
        ("undisclosed-recipients:;", []),
        ("<@relay.example,@other.example:u@example.org>", [("u@example.org", "")]),
        ("user@[192.0.2.1]", [("user@[192.0.2.1]", "")]),
        ("jörg@bücher.example", [("jörg@bücher.example", "")]),
        ("To\r\n Whom <a@b.org>", [("a@b.org", "To Whom")]),  # a folded header value
    ],
)
def test_parses_like_postfix(text: str, expected: list[tuple[str, str]]) -> None:
    assert [(m.address, m.display) for m in parse_address_list(text)] == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("@example.org", "local part"),
        ('""@example.org', "local part"),
        ("alice@", "domain"),
        ("alice@exa mple.org", "domain"),
        ("alice@-bad.example", "not a domain name"),
        ("alice@a..b", "not a domain name"),
        ("a@b@c", "more than one @"),
        ("alice smith", "a space"),
        ("<alice@example.org", "< without >"),
        ('"open@example.org', "unbalanced"),
        ("(open alice@example.org", "unbalanced"),
        ("alice@example.org>", "not an address"),
        ("Name <a@b.org> trailing", "text after"),
        ("a@b.org\nBcc: victim@example.org", "control character"),
        ("a@b.org\x00", "control character"),
        ("a\udcff@b.org", "not UTF-8"),
        ("group: a@b.org", "closing ;"),
        ("x" * 65 + "@example.org", "longer than 64"),
        ("a@" + "b" * 250 + ".org", "longer than 254"),
        ("a]b@example.org", "unexpected"),
    ],
)
def test_refuses_what_cannot_be_mail(text: str, reason: str) -> None:
    with pytest.raises(BadAddress) as info:
        parse_address_list(text)
    assert reason in str(info.value) and info.value.code == "bad_address"


def test_one_address_and_the_null_sender() -> None:
    assert parse_address("<>") == Mailbox("") and parse_address("") == Mailbox("")
    with pytest.raises(BadAddress, match="expected one address"):
        parse_address("a@b.org, c@d.org")


def test_completion_aliases_and_dedupe() -> None:
    policy = AddressPolicy(
        "example.org",
        frozenset({"localhost"}),
        {"root": ["root", "admin@example.net"], "ops@example.org": ["alice", "bob@example.net"]},
    )
    assert complete("root", "example.org") == "root@example.org"
    assert complete('"a@b"', "example.org") == '"a@b"@example.org'  # the @ is quoted: still bare
    given_ = [
        (Mailbox("root"), "to"),  # bare: completed, then aliased; the self-reference stays
        (Mailbox("ROOT@LOCALHOST"), "cc"),  # a local domain: the bare key applies, duplicates dropped
        (Mailbox("ops@EXAMPLE.ORG"), "bcc"),  # full-address key, domain case-insensitive
        (Mailbox("Carol@Example.NET", "Carol"), "to"),
        (Mailbox("Carol@example.net"), "cc"),  # the same address: the first wins
        (Mailbox("carol@example.net"), "cc"),  # local parts are case-sensitive
    ]
    assert [(m.address, m.display, k) for m, k in expand_aliases(policy, given_)] == [
        ("root@example.org", "", "to"),
        ("admin@example.net", "", "to"),
        ("alice@example.org", "", "bcc"),
        ("bob@example.net", "", "bcc"),
        ("Carol@Example.NET", "Carol", "to"),
        ("carol@example.net", "", "cc"),
    ]
    with pytest.raises(BadAddress, match="null address"):
        expand_aliases(policy, [(Mailbox(""), "to")])


def test_shared_alias_lists_are_expanded_once() -> None:
    aliases = {f"l{i}": [f"l{i + 1}", f"m{i}"] for i in range(40)} | {
        f"m{i}": [f"l{i + 1}"] for i in range(40)
    }
    policy = AddressPolicy("x.org", aliases=aliases)  # 2**40 paths to l40, if each were walked
    assert [m.address for m, _ in expand_aliases(policy, [(Mailbox("l0"), "to")])] == ["l40@x.org"]


def test_alias_loops_end() -> None:
    policy = AddressPolicy("x.org", aliases={"a": ["b"], "b": ["c", "a"], "c": ["a@x.org"]})
    assert [m.address for m, _ in expand_aliases(policy, [(Mailbox("a"), "to")])] == ["a@x.org"]


def test_distribution_lists_expand_to_members_never_to_a_list() -> None:
    """Seed 004's ExpandRecips: members keep their display names, a cyclic list reaches each member
    once and never a list address; a member met again is one recipient (the first, with its name)."""
    lists = {
        "loop1@x.org": ["loop2@x.org", "Ann <ann@x.org>"],
        "Loop2@X.org": ["loop1@x.org", '"Bee Bee" <bee@x.org>', "ann@X.ORG", "team"],
    }
    policy = AddressPolicy("x.org", aliases={"team": ["cat"]}, lists=lists)
    given_ = [(Mailbox("loop1@X.ORG"), "to"), (Mailbox("bee@x.org", "Other"), "cc")]
    # depth first: loop2 (loop1 again: nothing), Bee, ann@X.ORG, team -> cat; then loop1's Ann, a
    # duplicate of ann@X.ORG; the cc of bee a duplicate of the list's Bee
    assert [(m.address, m.display, k) for m, k in expand_aliases(policy, given_)] == [
        ("bee@x.org", "Bee Bee", "to"),
        ("ann@X.ORG", "", "to"),
        ("cat@x.org", "", "to"),
    ]


# ---------------------------------------------------------------------- properties

_ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
_local = st.one_of(
    st.text(_ATEXT, min_size=1, max_size=20),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=20).map(
        lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    ),
)
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_domain = st.lists(_label, min_size=1, max_size=4).map(".".join)
_display = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="\\"), max_size=20
)
_mailbox = st.builds(
    lambda local, domain, display: Mailbox(parse_address(f"{local}@{domain}").address, display.strip()),
    _local,
    _domain,
    _display,
)


@given(st.lists(_mailbox, min_size=1, max_size=5))
def test_formatted_lists_parse_back(mailboxes: list[Mailbox]) -> None:
    text = ", ".join(format_mailbox(m) for m in mailboxes)
    assert [(m.address, " ".join(m.display.split())) for m in parse_address_list(text)] == [
        (m.address, " ".join(m.display.split())) for m in mailboxes
    ]


@settings(max_examples=500)
@given(st.text(max_size=60))
def test_anything_parses_to_mail_or_is_refused_with_a_reason(text: str) -> None:
    try:
        found = parse_address_list(text)
    except BadAddress as exc:
        assert str(exc)
        return
    for m in found:
        assert m.address and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in m.address + m.display)
        assert parse_address(m.address).address == m.address  # canonical: parsing it again changes nothing
        local, _, domain = complete(m.address, "example.org").rpartition("@")
        assert local and domain


_names = st.sampled_from(["a", "b", "c", "d", "root"])


@given(
    st.dictionaries(_names, st.lists(_names, min_size=1, max_size=3), max_size=5),
    st.lists(_names, min_size=1),
)
def test_alias_expansion_ends_and_dedupes(aliases: dict[str, list[str]], given_: list[str]) -> None:
    policy = AddressPolicy("x.org", aliases=aliases)
    out = [m.address for m, _ in expand_aliases(policy, [(Mailbox(n), "to") for n in given_])]
    assert len(out) == len(set(out)) and all(a.endswith("@x.org") for a in out)
    for address in out:  # anything left with an alias of its own was met again while expanding (a loop)
        name = address.partition("@")[0]
        assert name not in aliases or name in {t for targets in aliases.values() for t in targets}


# ---------------------------------------------------------------------- the header section


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"hi\n", b"From: x\n\nhi\n"),  # body only: a blank line ends the new header section
        (b"", b"From: x\n\n"),
        (b"Subject: s\n\nbody\n", b"From: x\nSubject: s\n\nbody\n"),
        (b"\nbody\n", b"From: x\n\nbody\n"),
        (b"hi\r\nthere\r\n", b"From: x\r\n\r\nhi\r\nthere\r\n"),
    ],
)
def test_with_field_keeps_header_and_body_apart(content: bytes, expected: bytes) -> None:
    assert with_field(content, b"From: x") == expected


def test_has_field_looks_in_the_header_section_only() -> None:
    assert has_field(b"Subject: s\nFROM : a@b\n\nx", b"from")
    assert not has_field(b"Subject: s\n\nFrom: a@b\n", b"from")
    assert not has_field(b"hi\n", b"from")


def test_header_recipients_refuse_garbage() -> None:
    assert header_recipients(b"To: root, Bob <bob@x.org>\nCc: c@x.org\n\n") == [
        ("", "root", "to"),
        ("Bob", "bob@x.org", "to"),
        ("", "c@x.org", "cc"),
    ]
    with pytest.raises(BadAddress):
        header_recipients(b"To: @x.org\n\n")
    for raw in (b"J\xc3\xb6rg", b"J\xf6rg"):  # raw UTF-8, and a legacy mailer's Latin-1
        assert header_recipients(b"To: " + raw + b" <j@x.org>\n\n") == [("J\u00f6rg", "j@x.org", "to")]


# ---------------------------------------------------------------------- the rules of every path


def test_config_validates_addresses_and_aliases() -> None:
    config = parse_config(
        {"addresses": {"bounce_copy_to": "Postmaster <pm@example.org>"}, "aliases": {"root": "a@x.org, b"}}
    )
    assert config.addresses.bounce_copy_to == "pm@example.org"
    assert config.aliases == {"root": ["a@x.org", "b"]}
    assert default_domain(parse_config({})) == "localhost"  # the embedded default's local store
    for bad in (
        {"aliases": {"root": "@x.org"}},
        {"aliases": {"<>": "a@x.org"}},
        {"aliases": {"root": []}},
        {"addresses": {"default_domain": "exa mple.org"}},
        {"addresses": {"bounce_copy_to": "a@b, c@d"}},
    ):
        with pytest.raises(ConfigError) as info:
            parse_config(bad)
        assert next(iter(bad)) in str(info.value)


def test_complete_submission() -> None:
    config = parse_config(
        {
            "addresses": {"default_domain": "example.org", "sender_domain": "mail.example.org"},
            "aliases": {"root": ["admin@example.net", "ops"]},
        }
    )
    me = os.getuid()
    own = local_sender(config, me)
    assert own.endswith("@mail.example.org")
    env = complete_submission(config, SubmissionRequest(b"hi\n", None, ["root", "x@y.org"], me, True, "A B"))
    assert env.sender == own
    assert env.content == f'From: "A B" <{own}>\n\nhi\n'.encode()
    assert [r.address for r in env.recipients] == ["admin@example.net", "ops@example.org", "x@y.org"]
    env = complete_submission(
        config, SubmissionRequest(b"To: root\nBcc: b@y.org\n\nx", "cron", None, me, True)
    )
    assert env.sender == "cron@example.org" and b"Bcc" not in env.content
    assert env.content.startswith(b"From: cron@example.org\nTo: root@example.org\n")
    env = complete_submission(
        config, SubmissionRequest(b"From: Me <me@z.org>\n\nx", None, ["a@b.org"], me, True)
    )
    assert env.sender == "me@z.org" and env.content == b"From: Me <me@z.org>\n\nx"
    untrusted = SubmissionRequest(b"From: Me <me@z.org>\n\nx", "boss@z.org", ["a@b.org"], me, False)
    assert complete_submission(config, untrusted).sender == own
    assert complete_submission(config, SubmissionRequest(b"x", "<>", ["a@b.org"], me, True)).sender == ""
    with pytest.raises(BadAddress):
        complete_submission(config, SubmissionRequest(b"x", None, ["a@"], me, True))
    with pytest.raises(BadAddress):
        complete_submission(config, SubmissionRequest(b"x", "bad@", ["a@b.org"], me, True))
    with pytest.raises(InvalidArgument, match="full_name"):
        complete_submission(config, SubmissionRequest(b"x", None, ["a@b.org"], me, True, "x\r\nBcc: a@c"))
    with pytest.raises(NoRecipients):
        complete_submission(config, SubmissionRequest(b"x", None, [" , "], me, True))


CRON = (
    b"From: root (Cron Daemon)\r\nTo: root\r\nSubject: Cron <root@vm> run-parts\r\n"
    b"Cc: =?utf-8?q?J=C3=B6rg?= <joerg>,\r\n ok@example.net\r\nX-Cron-Env: <SHELL=/bin/sh>\r\n"
    b"\r\nTo: root\r\n"
)


def test_bare_names_in_address_fields_are_completed() -> None:
    config = parse_config({"addresses": {"default_domain": "example.org"}})
    env = complete_submission(config, SubmissionRequest(CRON, None, None, os.getuid(), True))
    assert env.content == (
        b'From: "Cron Daemon" <root@example.org>\r\nTo: root@example.org\r\n'
        b"Subject: Cron <root@vm> run-parts\r\n"
        b"Cc: =?utf-8?q?J=C3=B6rg?= <joerg@example.org>, ok@example.net\r\n"
        b"X-Cron-Env: <SHELL=/bin/sh>\r\n\r\nTo: root\r\n"  # the body is the body
    )
    assert env.sender == "root@example.org"
    assert [r.address for r in env.recipients] == ["root@example.org", "joerg@example.org", "ok@example.net"]


def test_map_fields_keeps_what_it_does_not_change_byte_for_byte() -> None:
    content = b"To: a@b.org,\n\tc@d.org\nFrom: <x@y.org>\n\nbody: root\n"
    assert map_fields(content, {b"to", b"from"}, lambda value: None) is content
    assert map_fields(content, {b"to"}, lambda value: value.upper()) == (
        b"To: A@B.ORG, C@D.ORG\nFrom: <x@y.org>\n\nbody: root\n"
    )


@given(st.binary(max_size=200))
def test_map_fields_with_no_change_is_the_identity(content: bytes) -> None:
    assert map_fields(content, {b"to", b"from"}, lambda value: None) == content

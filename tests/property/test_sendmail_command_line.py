"""sendmail's command line (spoolerd/sendmail_args.py) against a model: a delivery command line built
from options in any order and spelling (separate, attached, bundled behind flags) means what the options
say, the last of a repeated option winning, and the recipients are the arguments after them. Lines of
arbitrary bytes (as the kernel hands them to Python) parse or are a usage error, nothing else."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from spoolerd.sendmail_args import Mode, UsageError, parse_args, undecodable
from spoolerd.wiretext import has_control

_word = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=10)
_address = st.builds(lambda a, b: f"{a}@{b}", _word.filter(lambda w: not w.startswith("-")), _word)
_notify = st.one_of(
    st.just("never"), st.lists(st.sampled_from(["success", "delay", "failure"]), min_size=1).map(",".join)
)
# (letter, value) options and value-less flags, as a model of what each does
_valued = st.one_of(
    st.tuples(st.just("f"), st.one_of(_address, st.just("<>"), st.just(""))),
    st.tuples(st.just("r"), _address),
    st.tuples(st.just("F"), st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)),
    st.tuples(st.just("C"), _word),
    st.tuples(st.just("N"), _notify),
    st.tuples(st.just("o"), st.sampled_from(["i", "em", "Q/var/spool"])),
    st.tuples(st.just("B"), st.sampled_from(["7BIT", "8bitmime"])),
    st.tuples(st.just("R"), st.sampled_from(["full", "HDRS"])),
    st.tuples(st.just("V"), st.sampled_from(["env-1", "a b+c=d"])),
)
_flags = st.lists(st.sampled_from("Gimnt"), max_size=3)


@st.composite
def command_lines(draw: st.DrawFn) -> tuple[list[str], dict[str, object]]:
    argv: list[str] = []
    expected: dict[str, object] = {"from_headers": False, "dot_ends": True, "sender": None,
                                   "full_name": None, "config": None, "ndr": None, "dr": None,
                                   "notify": None, "ret": None, "envid": None}  # fmt: skip
    for flags, (letter, value) in draw(st.lists(st.tuples(_flags, _valued), max_size=6)):
        spelling = draw(st.sampled_from(["separate", "attached", "bundled"]))
        if spelling == "bundled" or not value:  # an empty value can only be the next argument
            argv += [f"-{''.join(flags)}{letter}", value]
        else:
            argv += [f"-{f}" for f in flags]
            argv += [f"-{letter}{value}"] if spelling == "attached" else [f"-{letter}", value]
        expected["from_headers"] = expected["from_headers"] or "t" in flags
        expected["dot_ends"] = expected["dot_ends"] and "i" not in flags and (letter, value) != ("o", "i")
        if letter in "fr":
            expected["sender"] = "" if value in ("", "<>") else value
        elif letter in "FC":
            expected[{"F": "full_name", "C": "config"}[letter]] = value
        elif letter == "N":
            words = set(value.split(","))
            expected["ndr"], expected["dr"] = "failure" in words, "success" in words
            expected["notify"] = ",".join(sorted(words))
        elif letter in "RV":
            expected[{"R": "ret", "V": "envid"}[letter]] = value.lower() if letter == "R" else value
    recipients = draw(st.lists(_address, max_size=4))
    if draw(st.booleans()):
        argv.append("--")
    return argv + recipients, expected | {"recipients": recipients}


@given(command_lines())
def test_a_delivery_command_line_means_what_its_options_say(
    line: tuple[list[str], dict[str, object]],
) -> None:
    argv, expected = line
    opts = parse_args(argv)
    assert opts.mode is Mode.DELIVER
    assert {name: getattr(opts, name) for name in expected} == expected  # Options is no dataclass (startup)


@given(st.lists(st.binary(max_size=12), max_size=8), st.sampled_from(["sendmail", "mailq", "newaliases"]))
def test_arbitrary_argument_bytes_parse_or_are_a_usage_error(raw: list[bytes], prog: str) -> None:
    argv = [os.fsdecode(arg) for arg in raw]  # bytes that are not UTF-8 become lone surrogates
    try:
        opts = parse_args(argv, prog)
    except UsageError as exc:
        assert str(exc) and str(exc).isprintable()
        return
    for value in [*opts.recipients, opts.sender or "", opts.full_name or "", opts.config or ""]:
        assert not has_control(value) and not undecodable(value)

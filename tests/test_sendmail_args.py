"""The sendmail command line (sans-io): what real programs pass, Postfix's getopt rules, properties."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolerd.sendmail_args import EX_DATAERR, EX_USAGE, Mode, Options, UsageError, parse_args
from spoolerd.sendmail_modes import ctl_argv, queued_for_site

VALUE_LETTERS = "ABCFLNORVXbefhopqr"
FLAG_LETTERS = "GIUcimntvx"
# a value each option accepts, so that the properties below are about the syntax, not the values
GOOD_VALUE = {"A": "c", "B": "8BITMIME", "C": "/etc/spoolerd/spoolerd.toml", "F": "Cron Daemon", "L": "x",
              "N": "failure,success", "O": "DeliveryMode=b", "R": "hdrs", "V": "env-1", "X": "/tmp/log",
              "b": "m", "e": "m", "f": "me@example.org", "h": "17", "o": "em", "p": "smtp",
              "q": "Iabc", "r": "me@example.org"}  # fmt: skip


def _delivery(opts: Options) -> tuple[object, ...]:
    return (opts.mode, opts.from_headers, opts.dot_ends, opts.sender, opts.full_name, opts.recipients,
            opts.config, opts.ndr, opts.dr, opts.flush_ids, opts.flush_site)  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # Debian cron, verbatim
        (["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root@localhost"],
         {"full_name": "CronDaemon", "dot_ends": False, "recipients": ["root@localhost"]}),
        # PHP's mail(): sendmail_path = "sendmail -t -i", and the bundled form
        (["-t", "-i"], {"from_headers": True, "dot_ends": False}),
        (["-ti"], {"from_headers": True, "dot_ends": False}),
        (["-tif", "a@b.example"], {"from_headers": True, "dot_ends": False, "sender": "a@b.example"}),
        # mutt with dsn_notify and dsn_return set
        (["-oem", "-oi", "-N", "failure,delay,success", "-R", "hdrs", "--", "x@y.example"],
         {"dot_ends": False, "ndr": True, "dr": True, "recipients": ["x@y.example"]}),
        (["-N", "never", "a@b.example"], {"ndr": False, "dr": False, "recipients": ["a@b.example"]}),
        (["-N", "success", "a@b.example"], {"ndr": False, "dr": True, "recipients": ["a@b.example"]}),
        # git send-email
        (["-i", "-f", "dev@example.org", "a@b.example", "c@d.example"],
         {"dot_ends": False, "sender": "dev@example.org", "recipients": ["a@b.example", "c@d.example"]}),
        (["-o", "i", "-odb", "-oQ/var/spool", "-h", "30", "-L", "app", "-O", "x=y", "-U", "-v", "-n",
          "-V", "env", "-X", "/dev/null", "-C", "/etc/x.toml", "-r", "<>", "a@b"],
         {"dot_ends": False, "sender": "", "config": "/etc/x.toml", "recipients": ["a@b"]}),
        (["-bm", "-f", "", "--", "-a@b"], {"sender": "", "recipients": ["-a@b"]}),
        (["a@b", "-f", "x@y"], {"recipients": ["a@b", "-f", "x@y"]}),  # options end at an address
        (["-bp"], {"mode": Mode.QUEUE}),
        (["-q"], {"mode": Mode.FLUSH, "verbose": False}),
        (["-v", "-q"], {"mode": Mode.FLUSH, "verbose": True}),
        (["-q1h"], {"mode": Mode.FLUSH}),
        (["-qIA1B2", "-qIC3"], {"mode": Mode.FLUSH, "flush_ids": ["A1B2", "C3"]}),
        (["-qRexample.org"], {"mode": Mode.FLUSH, "flush_site": "example.org"}),
        (["-bi"], {"mode": Mode.NEWALIASES}),
        (["-I"], {"mode": Mode.NEWALIASES}),
        (["-bv", "root@localhost"], {"mode": Mode.VERIFY, "recipients": ["root@localhost"]}),
        (["-bd"], {"mode": Mode.DAEMON}),
        (["-bs"], {"mode": Mode.SMTP}),
        (["-bH"], {"mode": Mode.IGNORE}),
        (["--help", "-t"], {"mode": Mode.HELP, "from_headers": True}),
    ],
)  # fmt: skip
def test_what_real_programs_pass(argv: list[str], expected: dict[str, object]) -> None:
    opts = parse_args(argv)
    for name, value in expected.items():
        assert getattr(opts, name) == value, name


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["-Z", "a@b"], "unknown option -Z"),
        (["-tZ", "a@b"], "unknown option -Z (in -tZ)"),
        (["--hlep"], "unknown option --hlep"),
        (["-f"], "-f needs an argument"),
        (["-bx"], "mode -bx is not supported"),
        (["-B", "9BIT", "a@b"], "-B '9BIT'"),
        (["-N", "never,success", "a@b"], "-N 'never,success'"),
        (["-N", "sometimes", "a@b"], "-N 'sometimes'"),
        (["-R", "most", "a@b"], "-R 'most'"),
        (["-qX"], "-qX is not supported"),
        (["-qI"], "-qI needs a queue id"),
        (["-qR"], "-qR needs a site"),
        (["-oA"], "-oA needs an alias database path"),
        (["-bp", "a@b"], "-bp takes no recipients"),
        (["-q", "a@b"], "-q takes no recipients"),
        (["-t", "-bp"], "-t can be used only in delivery mode"),
        (["-bv"], "-bv needs the addresses"),
        (["-bv", "-N", "never", "a@b"], "-N cannot be used with -bv"),
        (["-F", "a\nb", "x@y"], "control characters"),
        (["-V", "a" * 101, "x@y"], "-V"),
        (["-V", "caf\u00e9", "x@y"], "-V"),
        (["-V", "", "x@y"], "-V"),
        (["bad\r\n@x"], "control characters"),
    ],
)
def test_bad_command_lines_name_the_reason(argv: list[str], reason: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse_args(argv)
    assert reason in str(refused.value)


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["bad\r\n@x"], EX_DATAERR),
        (["-f", "me\r\nBcc: x@y", "a@b"], EX_DATAERR),
        (["-r", "me\x01@y", "a@b"], EX_DATAERR),
        (["a@b", "c\udcff@d"], EX_DATAERR),
        (["-F", "a\nb", "x@y"], EX_USAGE),
        (["-N", "sometimes", "a@b"], EX_USAGE),
    ],
)
def test_an_address_no_mail_can_have_is_bad_data_not_usage(argv: list[str], code: int) -> None:
    """Control characters or bytes that are not UTF-8 in an address exit 65, as in a header read with
    -t (README; found by a first-day trial: an argument exited 64); other bad options 64."""
    with pytest.raises(UsageError) as refused:
        parse_args(argv)
    assert refused.value.code == code


def test_argv0_mailq_and_newaliases_choose_the_mode_and_options_still_win() -> None:
    assert parse_args([], prog="/usr/bin/mailq").mode is Mode.QUEUE
    assert parse_args([], prog="newaliases").mode is Mode.NEWALIASES
    assert parse_args(["-bp"], prog="/usr/bin/newaliases").mode is Mode.QUEUE
    assert parse_args(["a@b"], prog="/usr/sbin/sendmail").mode is Mode.DELIVER


def test_modes_run_as_spoolerctl_commands() -> None:
    assert ctl_argv(parse_args(["-bp"])) == ["queue"]
    assert ctl_argv(parse_args(["-q"])) == ["flush"]
    assert ctl_argv(parse_args(["-qI-odd"])) == ["flush", "--", "-odd"]
    assert ctl_argv(parse_args(["-qRexample.org"]), ["M1", "M2"]) == ["flush", "--", "M1", "M2"]
    assert ctl_argv(parse_args(["-bv", "root@localhost", "x@y"])) == ["verify", "--", "root@localhost", "x@y"]
    assert ctl_argv(parse_args(["-bi"])) is None


def test_qr_picks_the_messages_with_a_recipient_still_due_at_the_site() -> None:
    def row(mid: str, *rcpts: tuple[str, str]) -> dict[str, object]:
        return {"id": mid, "recipients": [{"address": a, "state": s} for a, s in rcpts]}

    rows = [
        row("1", ("a@example.org", "deferred")),
        row("2", ("b@mx.Example.ORG", "pending"), ("c@other.test", "deferred")),
        row("3", ("d@example.org", "delivered"), ("e@other.test", "pending")),
        row("4", ("f@notexample.org", "pending")),
        {"id": "5", "recipients": None},  # being delivered right now
    ]
    assert queued_for_site(rows, "example.org") == ["1", "2"]
    assert queued_for_site(rows, "@Other.Test") == ["2", "3"]


def test_the_command_starts_on_the_standard_library_only() -> None:
    code = (
        "import sys, spoolerd.sendmail, spoolerd.sendmail_modes\n"
        "spoolerd.sendmail.parse_args(['-FCronDaemon', '-i', '-B8BITMIME', '-oem', 'root'])\n"
        "print(sorted({m.partition('.')[0] for m in sys.modules}"
        " & {'pydantic', 'anyio', 'structlog', 'uvloop', 'aiosmtplib', 'hypothesis'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_report_requests_only_when_n_is_given() -> None:
    assert parse_args(["a@b"]).report_requests() == {}
    assert parse_args(["-N", "never", "a@b"]).report_requests() == {
        "ndr": False,
        "dr": False,
        "notify": "never",
    }
    assert parse_args(["-Nsuccess,FAILURE", "a@b"]).report_requests() == {
        "ndr": True, "dr": True, "notify": "failure,success"
    }  # fmt: skip
    assert parse_args(["-R", "HDRS", "-V", "id 1", "a@b"]).report_requests() == {
        "ret": "hdrs",
        "envid": "id 1",
    }


# ---------------------------------------------------------------------- properties

printable = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12)
flag_runs = st.lists(st.sampled_from("Gimnt"), min_size=1, max_size=6)  # delivery-mode flags


@given(flag_runs, st.sampled_from("fFrCLOhV"), printable)
def test_bundled_flags_mean_the_same_as_separate_ones(flags: list[str], letter: str, value: str) -> None:
    bundled = parse_args([f"-{''.join(flags)}{letter}", value, "rcpt@x"])
    separate = parse_args([*(f"-{f}" for f in flags), f"-{letter}", value, "rcpt@x"])
    attached = parse_args([*(f"-{f}" for f in flags), f"-{letter}{value}", "rcpt@x"])
    assert _delivery(bundled) == _delivery(separate) == _delivery(attached)


@given(st.sampled_from(VALUE_LETTERS.replace("q", "")))  # a lone -q is a flush, as with Postfix
def test_every_value_option_takes_its_value_attached_or_next(letter: str) -> None:
    value = GOOD_VALUE[letter]
    tail = ["rcpt@x"]
    assert _delivery(parse_args([f"-{letter}{value}", *tail])) == _delivery(
        parse_args([f"-{letter}", value, *tail])
    )


@given(st.lists(printable, max_size=5))
def test_after_double_dash_everything_is_a_recipient(recipients: list[str]) -> None:
    assert parse_args(["-i", "--", *recipients]).recipients == recipients


@given(st.characters(min_codepoint=0x21, max_codepoint=0x7E))
def test_a_letter_postfix_does_not_know_is_refused_by_name(letter: str) -> None:
    if letter in VALUE_LETTERS + FLAG_LETTERS or letter == "-":
        return
    with pytest.raises(UsageError) as refused:
        parse_args([f"-t{letter}", "a@b"])
    assert str(refused.value) == f"unknown option -{letter} (in -t{letter})"


@given(st.lists(st.text(max_size=8), max_size=6), st.sampled_from(["sendmail", "mailq", "newaliases"]))
def test_any_command_line_parses_or_is_a_usage_error(argv: list[str], prog: str) -> None:
    try:
        opts = parse_args(argv, prog)
    except UsageError as exc:
        assert str(exc)
        return
    assert opts.recipients == argv[len(argv) - len(opts.recipients) :]  # recipients are the tail
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for r in opts.recipients for c in r)
    for value in (opts.sender, opts.full_name, opts.config):
        assert value is None or "\n" not in value


@given(st.lists(st.sampled_from(["success", "delay", "failure", "SUCCESS", "Failure"]), min_size=1))
def test_n_is_rfc_3461_notify(words: list[str]) -> None:
    opts = parse_args(["-N", ",".join(words), "a@b"])
    lower = {w.lower() for w in words}
    assert (opts.ndr, opts.dr) == ("failure" in lower, "success" in lower)

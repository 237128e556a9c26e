"""``spoolerd-sendmail``: a sendmail(8)-compatible submission command for cron, mailx, PHP and friends.

    spoolerd-sendmail [-t] [-i|-oi] [-f sender] [-F name] [-N dsn] [-bm] [--] [recipient ...] < message

Every option Postfix's sendmail accepts is accepted (``sendmail_args``); the other modes (``mailq``,
``-q``, ``newaliases``, ``-bv``) are in ``sendmail_modes``.

The message goes to the daemon's control socket; when no daemon answers it is written straight into
the default store (the same SQLite database; ``sendmail_direct``), where the daemon finds it when it
starts. The exit status follows sysexits(3). The common path imports only the standard library, to start fast.
"""

from __future__ import annotations

import os
import sys

from .client import ConnectionLost, ControlClient, Refused, Unreachable
from .errors import BadAddress
from .sendmail_args import (
    EX_CONFIG,
    EX_DATAERR,
    EX_NOINPUT,
    EX_NOPERM,
    EX_OK,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    EX_USAGE,
    Mode,
    Options,
    UsageError,
    parse_args,
)
from .sendmail_direct import NoStore, submit_direct

TYPE_CHECKING = False  # typing is not imported at run time: start-up is most of a submit's time
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main", "parse_args"]


def read_message(stream: bytes, dot_ends: bool) -> bytes:
    if not dot_ends:
        return stream
    out = []
    for line in stream.splitlines(keepends=True):
        if line.rstrip(b"\r\n") == b".":
            break
        out.append(line)
    return b"".join(out)


def prepare(content: bytes, opts: Options) -> tuple[bytes, str | None, list[str]]:
    """The content to submit, the envelope sender as given (None: by the rules) and the recipients as
    given (with -t, those of To, Cc and Bcc too, and the Bcc fields dropped). Completing them (default
    domain, aliases, masquerading, the From field a message lacks) is ``submit_rules``'s, in the daemon
    or in ``sendmail_direct``, so both paths give the same result."""
    recipients = list(opts.recipients)
    if opts.from_headers:
        from .envelope import header_recipients, without_bcc  # only when headers matter

        recipients += [address for _display, address, _kind in header_recipients(content)]
        content = without_bcc(content)
    return content, opts.sender, recipients


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """``prog`` is argv[0]: invoked as ``mailq`` or ``newaliases`` it lists the queue or notes aliases."""
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv, sys.argv[0] if prog is None else prog)
    except UsageError as exc:
        print(f"spoolerd-sendmail: {exc}", file=sys.stderr)
        return exc.code
    if opts.config is not None:
        os.environ["SPOOLERD_CONFIG"] = opts.config  # -C: for the direct path, as if set by the caller
    if opts.mode is not Mode.DELIVER:
        from .sendmail_modes import run_mode

        return run_mode(opts)
    try:
        content, sender, recipients = prepare(read_message(sys.stdin.buffer.read(), opts.dot_ends), opts)
    except UsageError as exc:
        print(f"spoolerd-sendmail: {exc}", file=sys.stderr)
        return exc.code
    except BadAddress as exc:
        print(f"spoolerd-sendmail: {exc}", file=sys.stderr)
        return EX_DATAERR
    except OSError as exc:
        print(f"spoolerd-sendmail: cannot read the message: {exc}", file=sys.stderr)
        return EX_NOINPUT
    if not recipients:
        print("spoolerd-sendmail: no recipients (give addresses, or -t with To/Cc/Bcc)", file=sys.stderr)
        return EX_USAGE
    try:
        with ControlClient(timeout=None) as client:  # a submit is answered once it is durable: wait
            client.submit(
                content,
                sender=sender,
                recipients=recipients,
                full_name=opts.full_name,
                **opts.report_requests(),
            )
    except ConnectionLost as exc:
        # the request went out: it may be queued already, so writing it again could send it twice
        print(f"spoolerd-sendmail: {exc}; the message may or may not be queued", file=sys.stderr)
        return EX_TEMPFAIL
    except Refused as exc:
        print(f"spoolerd-sendmail: refused: {exc}", file=sys.stderr)
        return _exit_status(exc.code)
    except Unreachable as exc:
        if exc.denied:  # a daemon's socket this user may not use: writing its store would fail as well
            print(f"spoolerd-sendmail: {exc} (not in [control] allowed_groups?)", file=sys.stderr)
            return EX_NOPERM
        unreachable = exc  # no daemon: queue it in the store directly
    else:
        return EX_OK
    try:
        submit_direct(content, sender, recipients, opts.report_requests(), opts.full_name)
    except NoStore as exc:
        print(f"spoolerd-sendmail: {unreachable}, and {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except Exception as exc:
        print(f"spoolerd-sendmail: {unreachable}, and could not queue the message: {exc}", file=sys.stderr)
        return _exit_status(getattr(exc, "code", ""))
    return EX_OK


def _exit_status(code: str) -> int:
    """The sysexits status for a refusal's stable code, the same with or without the daemon: what will
    never be accepted is permanent (a message over the size limit: 69, as Postfix's sendmail exits)."""
    if code == "bad_config":
        return EX_CONFIG
    if code == "message_too_large":
        return EX_UNAVAILABLE
    if code in ("bad_args", "invalid_argument", "no_recipients", "bad_address", "bad_request", "bad_json"):
        return EX_DATAERR
    return EX_TEMPFAIL


if __name__ == "__main__":
    sys.exit(main())

"""``spoolerd-sendmail``'s modes other than delivering a message (-bp, -q, -bi, -bv, -bd, -bs, --help).

Each is what spoolerd already offers elsewhere, reached the way sendmail users know: the queue listing
and the flush are ``spoolerctl``'s own code (``mailq`` = ``spoolerctl queue``, ``sendmail -q`` =
``spoolerctl flush``), with spoolerctl's exit codes mapped to sysexits.
"""

from __future__ import annotations

import contextlib
import io
import sys
from typing import Any

from .client import ConnectionLost, ControlClient, Refused, Unreachable
from .sendmail_args import EX_NOPERM, EX_OK, EX_UNAVAILABLE, EX_USAGE, USAGE, Mode, Options

__all__ = ["CTL_EXIT", "ctl_argv", "queued_for_site", "run_mode"]

# spoolerctl's 0 ok, 1 refused by the daemon, 2 usage, 3 no daemon -> sysexits (as postqueue: "the mail
# system is down" is EX_UNAVAILABLE); a socket this user may not open is 77, as in delivery mode
CTL_EXIT = {0: EX_OK, 1: EX_UNAVAILABLE, 2: EX_USAGE, 3: EX_UNAVAILABLE, EX_NOPERM: EX_NOPERM}

NEWALIASES_NOTE = (
    "spoolerd-sendmail: nothing to rebuild: aliases come from the [aliases] section of the spoolerd "
    "configuration; `spoolerctl reload` applies a change"
)


def queued_for_site(rows: list[dict[str, Any]], site: str) -> list[str]:
    """The queued messages with a recipient still to be delivered at ``site`` or one of its
    subdomains (sendmail -qR)."""
    site = site.lower().lstrip("@")
    ids = []
    for row in rows:
        for rcpt in row.get("recipients") or []:  # None: being delivered right now
            domain = str(rcpt["address"]).rpartition("@")[2].lower()
            if rcpt["state"] in ("pending", "deferred") and (domain == site or domain.endswith("." + site)):
                ids.append(str(row["id"]))
                break
    return ids


def ctl_argv(opts: Options, site_ids: list[str] | None = None) -> list[str] | None:
    """The ``spoolerctl`` command line a mode runs as (None: the mode needs no daemon); ``site_ids`` are
    the messages a -qR found."""
    if opts.mode is Mode.QUEUE:
        return ["queue"]
    if opts.mode is Mode.FLUSH:
        ids = [*opts.flush_ids, *(site_ids or [])]
        return ["flush", "--", *ids] if ids else ["flush"]
    if opts.mode is Mode.VERIFY:
        sender = [] if opts.sender is None else ["--from", opts.sender]
        return ["verify", *sender, "--", *opts.recipients]
    return None


def run_mode(opts: Options) -> int:
    if opts.mode is Mode.HELP:
        sys.stdout.write(USAGE)
        return EX_OK
    if opts.mode is Mode.NEWALIASES:
        print(NEWALIASES_NOTE, file=sys.stderr)
        return EX_OK
    if opts.mode is Mode.IGNORE:
        return EX_OK  # -bh / -bH: Postfix ignores them too (no host status database)
    if opts.mode is Mode.DAEMON:
        print("spoolerd-sendmail: -bd (daemon mode) is not a sendmail mode here: run `spoolerd run`",
              file=sys.stderr)  # fmt: skip
        return EX_USAGE
    if opts.mode is Mode.SMTP:  # the SMTP listener's session on stdin/stdout (aiosmtpd: loaded for -bs only)
        from .listener.stdio import serve_stdio

        return serve_stdio()
    site_ids = None
    if opts.flush_site is not None:
        try:
            with ControlClient() as client:
                site_ids = queued_for_site(client.call("queue"), opts.flush_site)
        except (Unreachable, ConnectionLost, Refused) as exc:
            print(f"spoolerd-sendmail: {exc}", file=sys.stderr)
            return EX_NOPERM if isinstance(exc, Unreachable) and exc.denied else EX_UNAVAILABLE
        if not site_ids:
            print(f"spoolerd-sendmail: nothing queued for {opts.flush_site}", file=sys.stderr)
            return EX_OK
    argv = ctl_argv(opts, site_ids)
    assert argv is not None, opts.mode
    from .ctl import main as ctl_main

    quiet = opts.mode is Mode.FLUSH and not opts.verbose  # silent as postqueue -f (cron runs sendmail -q)
    with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
        code = ctl_main(argv, denied=EX_NOPERM, prog="spoolerd-sendmail")
    return CTL_EXIT.get(code, EX_UNAVAILABLE)

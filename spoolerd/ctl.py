"""``spoolerctl``: the operator's command line over the control socket.

Human tables by default, ``--json`` for scripts. Exit codes: 0 ok, 1 refused by the daemon, 2 usage,
3 daemon unreachable, 4 reloaded but a change needs a restart, 5 reloaded but a change could not be
applied (a listener that cannot bind its address).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import time
from typing import Any

from . import __version__
from .client import ConnectionLost, ControlClient, Refused, Unreachable
from .ctl_verify import show_verify
from .duration import parse_duration
from .errors import InvalidArgument
from .message_options import PRIORITIES
from .progress import FlushCount, FlushProgress
from .views import show_queue as _show_queue
from .views import table as _table
from .views import watch_line

__all__ = ["main"]

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_RESTART_NEEDED = 4  # reload: applied what it could; some changes wait for a restart
EXIT_NOT_APPLIED = 5  # reload: applied what it could; some changes failed (status shows them failing)


def _reload_left(result: dict[str, Any]) -> int:
    """What a reload left undone, on stderr, and its exit code (a failed change outranks a restart)."""
    if result["restart_needed"]:
        restart = ", ".join(result["restart_needed"])
        why = "not applied until spoolerd restarts"
        print(f"spoolerctl: restart needed for: {restart} ({why})", file=sys.stderr)
    for problem in result.get("not_applied", []):  # (a daemon of an earlier version has no such key)
        print(f"spoolerctl: not applied: {problem}", file=sys.stderr)
    return EXIT_NOT_APPLIED if result.get("not_applied") else EXIT_RESTART_NEEDED


def _show_status(rows: list[dict[str, Any]]) -> str:
    """One line per row (a relay's under its transport's, indented), then why each failing one fails."""
    body = []
    for r in rows:
        counters = " ".join(f"{k}={v}" for k, v in (r.get("counters") or {}).items())
        entry = ("  " if r["resource_type"] == "relay" else "") + str(r.get("entry_id", r["name"]))
        body.append([entry, r["resource_type"], r.get("provider", ""), r.get("state", ""),
                     ",".join(r["status"]), ",".join(r.get("methods", [])), counters])  # fmt: skip
    table = _table(body, ["ENTRY", "TYPE", "PROVIDER", "STATE", "STATUS", "METHODS", "COUNTERS"])
    slowed = [
        _slowed(r["name"], d, s) for r in rows for d, s in ((r.get("rate") or {}).get("slowed") or {}).items()
    ]
    return "\n".join([table, *(_failing(r) for r in rows if "failure" in r["status"]), *slowed])


def _slowed(name: str, destination: str, slowed: dict[str, Any]) -> str:
    """A destination whose rate a slow-down reply halved, and until when."""
    until = time.strftime("%H:%M:%S", time.localtime(slowed["until"]))
    return f"{name}: {destination} slowed down to {slowed['messages']} a period until {until}"


def _failing(row: dict[str, Any]) -> str:
    """Why a row shows ``failure``, and since when."""
    since = row.get("failing_since") or row.get("since")
    when = f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if since else ""
    return (
        f"{row.get('entry_id', row['name'])}: failing{when}: {row.get('last_error') or 'no error recorded'}"
    )


def _show_list(rows: list[dict[str, Any]]) -> str:
    body = [[r["id"], r["class"], time.strftime("%Y-%m-%d %H:%M", time.localtime(r["time"])), r["size"],
             r["sender"], r["subject"]] for r in rows]  # fmt: skip
    return _table(body, ["ID", "CLASS", "TIME", "SIZE", "SENDER", "SUBJECT"])


def _flush_count(client: ControlClient, args: argparse.Namespace, direction: str) -> FlushCount:
    """What a flush is expected to try, for its progress line: the messages named, or every queued one
    (unknown when one transport is flushed)."""
    count = FlushCount(count_received=direction == "download")
    if args.ids:
        count.total = len(args.ids)
    elif (
        args.transport is None
        and args.entry is None
        and direction != "download"
        and not args.no_wait
        and sys.stderr.isatty()
    ):
        rows = client.call("status")
        count.total = sum(
            r.get("counters", {}).get("queued", 0) for r in rows if r["resource_type"] == "store"
        )
    return count


def _show_flush(result: dict[str, Any]) -> str:
    """The counts, then one line per recipient left deferred: queue id, recipient, why."""
    lines = [" ".join(f"{k}={v}" for k, v in result.items() if k != "deferrals")]
    for d in result.get("deferrals", []):
        reply = " ".join(str(x) for x in (d["code"], d["status"], d["reason"]) if x)
        lines.append(f"{d['id']}  {d['recipient']}  deferred: {reply}")
    return "\n".join(lines)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _flush_parser(f: argparse.ArgumentParser) -> None:
    direction = f.add_mutually_exclusive_group()
    direction.add_argument("--upload", action="store_true", help="outgoing mail only")
    direction.add_argument("--download", action="store_true", help="incoming mail only")
    target = f.add_mutually_exclusive_group()
    target.add_argument("--transport", help="flush this transport's queue only")
    target.add_argument("--entry", help="flush the status row with this entry id (spooler, transport:NAME)")
    f.add_argument(
        "--force",
        action="store_true",
        help="every message makes its own attempt, even to a destination this flush found down"
        " (a plain flush already tries every queued message now, deferred ones included)",
    )
    f.add_argument("--no-wait", action="store_true", help="return at once; the flush runs on")
    f.add_argument("ids", nargs="*", help="only these messages")


def _submit_parser(s: argparse.ArgumentParser) -> None:
    s.add_argument("file")
    s.add_argument("--store")
    s.add_argument("--from", dest="sender", help="envelope sender")
    s.add_argument("--to", action="append", dest="recipients", help="envelope recipient (repeatable)")
    s.add_argument("--dr", action="store_true", help="ask for a delivery report once delivered")
    s.add_argument("--no-ndr", action="store_true", help="no non-delivery report if a recipient fails")
    s.add_argument(
        "--notify", help="RFC 3461 NOTIFY for every recipient: never, or some of success,failure,delay"
    )
    s.add_argument(
        "--ret", choices=["full", "hdrs"], help="a non-delivery report returns the message or its header"
    )
    s.add_argument("--envid", help="the envelope id reports quote (Original-Envelope-Id)")
    s.add_argument(
        "--priority", choices=["urgent", "normal", "non-urgent"], help="PR_PRIORITY (default: the header's)"
    )
    s.add_argument(
        "--not-before", metavar="DURATION", type=_duration, help="deferred send time, from now (e.g. 2h, 30m)"
    )


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)  # accepted before or after the command
    common.add_argument("--socket", default=argparse.SUPPRESS, help="control socket path")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="answer as JSON")
    p = argparse.ArgumentParser(prog="spoolerctl", description="control a running spoolerd", parents=[common])
    p.add_argument("--version", action="version", version=f"spoolerctl {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub_add = sub.add_parser

    def add_parser(name: str, **kw: Any) -> argparse.ArgumentParser:
        return sub_add(name, parents=[common], **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]
    st = sub.add_parser("status", help="the status table")
    st.add_argument("--entry", help="only the row with this entry id (e.g. transport:smtp)")
    q = sub.add_parser("queue", help="queued messages with per-recipient state (like mailq)")
    q.add_argument("--store")
    _flush_parser(sub.add_parser("flush", help="send/receive now"))
    _submit_parser(sub.add_parser("submit", help="submit an RFC 5322 file (recipients from To/Cc/Bcc)"))
    for name, help_text in (
        ("abort", "take a message off the queue"),
        ("hold", "keep a queued message from being sent"),
        ("release", "let a held message go"),
        ("cat", "print a message"),
        ("rm", "delete a message that is not queued (abort a queued one first)"),
    ):
        a = sub.add_parser(name, help=help_text)
        a.add_argument("id")
        a.add_argument("--store")
    for name in ("online", "offline"):
        t = sub.add_parser(name, help=f"take a transport {name}")
        t.add_argument("transport", nargs="?")
        t.add_argument("--entry", help="the transport's status row entry id (transport:NAME)")
    ls = sub.add_parser("ls", help="list a folder (default: inbox)")
    ls.add_argument("folder", nargs="?", default="inbox")
    ls.add_argument("--store")
    pg = sub.add_parser("purge", help="delete a folder's messages older than a duration")
    pg.add_argument("folder", help="inbox, outbox, sent, drafts, deleted, or a folder id")
    pg.add_argument(
        "--older-than", required=True, type=_duration, help="e.g. 30d, 12h, 90m (seconds if bare)"
    )
    pg.add_argument("--store")
    sub.add_parser("reload", help="re-read the daemon's configuration (a bad one is refused)")
    v = sub.add_parser("verify", help="how addresses would be completed, aliased and routed (sends nothing)")
    v.add_argument("addresses", nargs="+", metavar="ADDRESS")
    v.add_argument(
        "--from", dest="sender", metavar="SENDER", help="route as mail from SENDER would be ([sender_routes])"
    )
    w = sub.add_parser("watch", help="print events as they happen")
    w.add_argument("--store")
    return p


def _change(args: argparse.Namespace, client: ControlClient) -> tuple[Any, str]:
    """A command that changes messages (abort, hold, release, rm, purge): its answer, and what to print."""
    if args.command == "purge":
        result = client.call("purge", folder=args.folder, older_than=args.older_than, store=args.store)
        return result, f"{result['purged']} message(s) removed from {result['folder']} in {result['store']}"
    result = client.call(args.command, id=args.id, store=args.store)
    done = {"abort": "aborted", "hold": "held", "release": "released", "rm": "removed"}[args.command]
    return result, f"{args.id} {done}"


def _run(args: argparse.Namespace, client: ControlClient) -> int:
    out = sys.stdout
    if args.command == "watch":
        for event in client.events(store=args.store):
            lines = [json.dumps(event)] if args.json else watch_line(event)
            if lines:  # a routine status change has no line of its own
                out.write("\n".join(lines) + "\n")
                out.flush()
        return EXIT_OK
    result: Any
    if args.command == "status":
        result = client.call("status", entry=args.entry)
        text = _show_status(result)
    elif args.command == "queue":
        result = client.call("queue", store=args.store)
        text = _show_queue(result)
    elif args.command == "flush":
        direction = "upload" if args.upload else "download" if args.download else "both"
        count = _flush_count(client, args, direction)
        with FlushProgress(args.socket, count, enabled=not args.no_wait):
            result = client.call("flush", direction=direction, transport=args.transport, entry=args.entry,
                                 force=args.force, wait=not args.no_wait, ids=args.ids or None)  # fmt: skip
        text = "flush started" if args.no_wait else _show_flush(result)
    elif args.command == "submit":
        with open(args.file, "rb") as fh:
            content = fh.read()
        options = {
            "dr": args.dr,
            "ndr": not args.no_ndr,
            "priority": None if args.priority is None else PRIORITIES[args.priority],
            "not_before": None if args.not_before is None else time.time() + args.not_before,
            "notify": args.notify,
            "ret": args.ret,
            "envid": args.envid,
        }
        result = client.submit(
            content, store=args.store, sender=args.sender, recipients=args.recipients, **options
        )
        text = f"{result['id']} queued in {result['store']} for {result['recipients']} recipient(s)"
    elif args.command in ("abort", "hold", "release", "rm", "purge"):
        result, text = _change(args, client)
    elif args.command == "cat":
        result = client.call("fetch", id=args.id, store=args.store)
        if not args.json:
            sys.stdout.buffer.write(base64.b64decode(result["content"]))
            return EXIT_OK
        text = ""
    elif args.command in ("online", "offline"):
        result = client.call(args.command, transport=args.transport, entry=args.entry)
        text = f"{result['transport']} is {args.command}"
    elif args.command == "reload":
        result = client.call("reload")
        text = "reloaded: " + ("; ".join(result["applied"]) or "nothing changed")
        if result["restart_needed"] or result.get("not_applied"):
            out.write((json.dumps(result, indent=2) if args.json else text) + "\n")
            return _reload_left(result)
    elif args.command == "verify":
        result = client.call("verify", addresses=args.addresses, sender=args.sender)
        text = show_verify(result)
    else:  # ls
        result = client.call("list", folder=args.folder, store=args.store)
        text = _show_list(result)
    out.write((json.dumps(result, indent=2) if args.json else text) + "\n")
    if args.command == "verify" and any("error" in entry for entry in result):
        return EXIT_REFUSED
    return EXIT_OK


def main(argv: list[str] | None = None, *, denied: int = EXIT_REFUSED, prog: str = "spoolerctl") -> int:
    """``denied``: the exit code when the socket refuses this user, and ``prog`` the name its errors
    begin with (``spoolerd-sendmail``'s modes, which run a spoolerctl command: 77, their own name)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    args.json = getattr(args, "json", False)
    args.socket = getattr(args, "socket", None)
    if isinstance(sys.stdout, io.TextIOWrapper):  # a subject the terminal cannot show: '?', not a crash
        sys.stdout.reconfigure(errors="replace")
    try:
        with ControlClient(args.socket) as client:
            return _run(args, client)
    except Unreachable as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return denied if exc.denied else EXIT_UNREACHABLE  # denied: a daemon may well be running
    except ConnectionLost as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except Refused as exc:
        print(f"{prog}: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

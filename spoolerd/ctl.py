"""``spoolerctl``: the operator's command line over the control socket.

Human tables by default, ``--json`` for scripts. Exit codes: 0 ok, 1 refused by the daemon, 2 usage,
3 daemon unreachable.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from .client import ConnectionLost, ControlClient, Refused, Unreachable
from .ctl_verify import show_verify

__all__ = ["main"]

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _show_status(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        counters = " ".join(f"{k}={v}" for k, v in (r.get("counters") or {}).items())
        body.append([r["resource_type"], r["name"], r.get("provider", ""), ",".join(r["status"]),
                     ",".join(r.get("methods", [])), counters])  # fmt: skip
    return _table(body, ["TYPE", "NAME", "PROVIDER", "STATUS", "METHODS", "COUNTERS"])


def _show_queue(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "Mail queue is empty"
    lines = []
    for r in rows:
        flag = "*" if r["locked"] else "!" if r.get("held") else " "
        lines.append(
            f"{r['id']}{flag} {r['store']}  {_age(r['age'])}  {r['size']}  <{r['sender']}>  {r['subject']}"
        )
        for rcpt in r["recipients"] or []:
            last = " ".join(str(x) for x in (rcpt["last_code"], rcpt["last_status"], rcpt["last_text"]) if x)
            lines.append(
                f"      {rcpt['address']}  {rcpt['state']}  tries={rcpt['attempts']}  {last}".rstrip()
            )
        if r["recipients"] is None:
            lines.append("      (being delivered now)")
    return "\n".join(lines) + f"\n-- {len(rows)} message(s); * = being delivered, ! = held"


def _show_list(rows: list[dict[str, Any]]) -> str:
    body = [[r["id"], r["class"], time.strftime("%Y-%m-%d %H:%M", time.localtime(r["time"])), r["size"],
             r["sender"], r["subject"]] for r in rows]  # fmt: skip
    return _table(body, ["ID", "CLASS", "TIME", "SIZE", "SENDER", "SUBJECT"])


class _Progress:
    """An elapsed-time line on stderr while a synchronous flush runs (terminals only)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self.done.wait(0.2):
            sys.stderr.write(f"\r{self.label} {time.monotonic() - start:5.1f}s")
            sys.stderr.flush()
        sys.stderr.write("\r\033[K")

    def __enter__(self) -> _Progress:
        if sys.stderr.isatty():
            self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)  # accepted before or after the command
    common.add_argument("--socket", default=argparse.SUPPRESS, help="control socket path")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="answer as JSON")
    p = argparse.ArgumentParser(prog="spoolerctl", description="control a running spoolerd", parents=[common])
    sub = p.add_subparsers(dest="command", required=True)
    sub_add = sub.add_parser

    def add_parser(name: str, **kw: Any) -> argparse.ArgumentParser:
        return sub_add(name, parents=[common], **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]
    sub.add_parser("status", help="the status table")
    q = sub.add_parser("queue", help="queued messages with per-recipient state (like mailq)")
    q.add_argument("--store")
    f = sub.add_parser("flush", help="send/receive now")
    direction = f.add_mutually_exclusive_group()
    direction.add_argument("--upload", action="store_true", help="outgoing mail only")
    direction.add_argument("--download", action="store_true", help="incoming mail only")
    f.add_argument("--transport", help="flush this transport's queue only")
    f.add_argument("--force", action="store_true", help="ignore retry backoff and dead destinations")
    f.add_argument("--no-wait", action="store_true", help="return at once; the flush runs on")
    f.add_argument("ids", nargs="*", help="only these messages")
    s = sub.add_parser("submit", help="submit an RFC 5322 file (recipients from To/Cc/Bcc)")
    s.add_argument("file")
    s.add_argument("--store")
    s.add_argument("--from", dest="sender", help="envelope sender")
    s.add_argument("--to", action="append", dest="recipients", help="envelope recipient (repeatable)")
    for name, help_text in (
        ("abort", "take a message off the queue"),
        ("hold", "keep a queued message from being sent"),
        ("release", "let a held message go"),
        ("cat", "print a message"),
    ):
        a = sub.add_parser(name, help=help_text)
        a.add_argument("id")
        a.add_argument("--store")
    for name in ("online", "offline"):
        t = sub.add_parser(name, help=f"take a transport {name}")
        t.add_argument("transport")
    ls = sub.add_parser("ls", help="list a folder (default: inbox)")
    ls.add_argument("folder", nargs="?", default="inbox")
    ls.add_argument("--store")
    sub.add_parser("reload", help="re-read the daemon's configuration (a bad one is refused)")
    v = sub.add_parser("verify", help="how addresses would be completed, aliased and routed (sends nothing)")
    v.add_argument("addresses", nargs="+", metavar="ADDRESS")
    w = sub.add_parser("watch", help="print events as they happen")
    w.add_argument("--store")
    return p


def _run(args: argparse.Namespace, client: ControlClient) -> int:
    out = sys.stdout
    if args.command == "watch":
        for event in client.events(store=args.store):
            out.write(
                (json.dumps(event) if args.json else " ".join(f"{k}={v}" for k, v in event.items())) + "\n"
            )
            out.flush()
        return EXIT_OK
    result: Any
    if args.command == "status":
        result = client.call("status")
        text = _show_status(result)
    elif args.command == "queue":
        result = client.call("queue", store=args.store)
        text = _show_queue(result)
    elif args.command == "flush":
        direction = "upload" if args.upload else "download" if args.download else "both"
        with _Progress("flushing"):
            result = client.call("flush", direction=direction, transport=args.transport, force=args.force,
                                 wait=not args.no_wait, ids=args.ids or None)  # fmt: skip
        text = "flush started" if args.no_wait else " ".join(f"{k}={v}" for k, v in result.items())
    elif args.command == "submit":
        with open(args.file, "rb") as fh:
            data = base64.b64encode(fh.read()).decode()
        result = client.call(
            "submit", message=data, store=args.store, sender=args.sender, recipients=args.recipients
        )
        text = f"{result['id']} queued in {result['store']} for {result['recipients']} recipient(s)"
    elif args.command in ("abort", "hold", "release"):
        result = client.call(args.command, id=args.id, store=args.store)
        text = f"{args.id} " + {"abort": "aborted", "hold": "held", "release": "released"}[args.command]
    elif args.command == "cat":
        result = client.call("fetch", id=args.id, store=args.store)
        if not args.json:
            sys.stdout.buffer.write(base64.b64decode(result["content"]))
            return EXIT_OK
        text = ""
    elif args.command in ("online", "offline"):
        result = client.call(args.command, transport=args.transport)
        text = f"{args.transport} is {args.command}"
    elif args.command == "reload":
        result = client.call("reload")
        restart = ", ".join(result["restart_needed"])
        text = "reloaded" + (f"; restart needed for: {restart}" if restart else "")
    elif args.command == "verify":
        result = client.call("verify", addresses=args.addresses)
        text = show_verify(result)
    else:  # ls
        result = client.call("list", folder=args.folder, store=args.store)
        text = _show_list(result)
    out.write((json.dumps(result, indent=2) if args.json else text) + "\n")
    if args.command == "verify" and any("error" in entry for entry in result):
        return EXIT_REFUSED
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    args.json = getattr(args, "json", False)
    args.socket = getattr(args, "socket", None)
    try:
        with ControlClient(args.socket) as client:
            return _run(args, client)
    except (Unreachable, ConnectionLost) as exc:
        print(f"spoolerctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except Refused as exc:
        print(f"spoolerctl: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as exc:
        print(f"spoolerctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

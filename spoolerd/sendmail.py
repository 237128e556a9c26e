"""``spoolerd-sendmail``: a sendmail(8)-compatible submission command for cron, mailx, PHP and friends.

    spoolerd-sendmail [-t] [-i|-oi] [-f sender] [-F name] [-bm] [--] [recipient ...] < message

The message goes to the daemon's control socket; when no daemon answers it is written straight into
the default store (the same SQLite database), where the daemon finds it when it starts. The exit status
follows sysexits(3). The common path imports only the standard library, to start fast.
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Sequence

from .client import ConnectionLost, ControlClient, Refused, Unreachable
from .errors import BadAddress

__all__ = ["main", "parse_args"]

EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_SOFTWARE, EX_TEMPFAIL, EX_CONFIG = 0, 64, 65, 66, 70, 75, 78


class UsageError(Exception):
    pass


def _has_control(value: str) -> bool:
    """CR, LF and other control characters never reach a header or an SMTP command."""
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)


class Options:
    def __init__(self) -> None:
        self.from_headers = False  # -t
        self.dot_ends = True  # without -i/-oi a line with a lone "." ends the message
        self.sender: str | None = None  # -f
        self.full_name: str | None = None  # -F
        self.recipients: list[str] = []


def parse_args(argv: Sequence[str]) -> Options:
    opts = Options()
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            opts.recipients += args
            break
        if not arg.startswith("-") or arg == "-":
            opts.recipients.append(arg)
            continue
        flag, rest = arg[:2], arg[2:]
        if flag in ("-f", "-r", "-F"):
            value = rest if rest else (args.pop(0) if args else None)
            if value is None:
                raise UsageError(f"{flag} needs an argument")
            if _has_control(value):
                raise UsageError(f"{flag} {value!r} contains control characters")
            if flag == "-F":
                opts.full_name = value
            else:
                opts.sender = "" if value in ("", "<>") else value  # "" and <> are the null sender
        elif arg == "-t":
            opts.from_headers = True
        elif arg in ("-i", "-oi"):
            opts.dot_ends = False
        elif arg == "-bm" or flag in ("-o", "-v", "-e") or arg == "-U":
            pass  # deliver mail (the default); other -o options and -v are accepted and ignored
        elif flag == "-b":
            raise UsageError(f"mode {arg} is not supported (only -bm)")
        else:
            raise UsageError(f"unknown option {arg}")
    for r in opts.recipients:
        if _has_control(r):
            raise UsageError(f"recipient {r!r} contains control characters")
    return opts


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
    or in ``_submit_direct``, so both paths give the same result."""
    recipients = list(opts.recipients)
    if opts.from_headers:
        from .envelope import header_recipients, without_bcc  # only when headers matter

        recipients += [address for _display, address, _kind in header_recipients(content)]
        content = without_bcc(content)
    return content, opts.sender, recipients


SYSTEM_CONFIG = "/etc/spoolerd/spoolerd.toml"


class NoStore(Exception):
    """No daemon answers and no store to write into could be found."""


def _fallback_config() -> str | None:
    """The config whose default store we may write into: $SPOOLERD_CONFIG, else the system file, else
    the embedded default, but only where its store already exists (never a new ./spool by accident)."""
    explicit = os.environ.get("SPOOLERD_CONFIG")
    if explicit:
        return explicit
    if os.path.exists(SYSTEM_CONFIG):
        return SYSTEM_CONFIG
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0] or "spool"
    if os.path.exists(os.path.join(state, "spool.db")):
        return None
    raise NoStore("no spoolerd answers, and there is no store to queue into (set SPOOLERD_CONFIG)")


def _state_owner(state_dir: os.PathLike[str]) -> int:
    """The uid the daemon runs as: the owner of its state directory."""
    try:
        return os.stat(state_dir).st_uid
    except OSError:
        return 0


def _submit_direct(
    content: bytes, sender: str | None, recipients: list[str], full_name: str | None = None
) -> str:
    """No daemon: queue the message in the default store ourselves (the daemon picks it up later)."""
    config_path = _fallback_config()
    import anyio

    from .config import load_config, open_stores
    from .plugins import PluginRegistry
    from .submission import create_outgoing
    from .submit_rules import SubmissionRequest, complete_submission, trusted

    async def run() -> str:
        registry = PluginRegistry()
        config = load_config(config_path, registry)
        uid = os.getuid()
        trusts = trusted(config, uid, _state_owner(config.spooler.state_dir))
        env = complete_submission(
            config, SubmissionRequest(content, sender, recipients, uid, trusts, full_name)
        )
        opened = open_stores(config, registry)
        store = opened.stores[opened.default]
        await store.start()
        try:
            message_id = await create_outgoing(
                store, env.content, env.recipients, sender=env.sender, subject=env.subject
            )
            await store.submit(message_id, preprocess=True)
            return message_id
        finally:
            await store.stop()

    return anyio.run(run)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
        content, sender, recipients = prepare(read_message(sys.stdin.buffer.read(), opts.dot_ends), opts)
    except UsageError as exc:
        print(f"spoolerd-sendmail: {exc}", file=sys.stderr)
        return EX_USAGE
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
            client.call(
                "submit", message=base64.b64encode(content).decode(), sender=sender, recipients=recipients,
                full_name=opts.full_name,
            )  # fmt: skip
    except ConnectionLost as exc:
        # the request went out: it may be queued already, so writing it again could send it twice
        print(f"spoolerd-sendmail: {exc}; the message may or may not be queued", file=sys.stderr)
        return EX_TEMPFAIL
    except Refused as exc:
        print(f"spoolerd-sendmail: refused: {exc}", file=sys.stderr)
        refused = ("bad_args", "invalid_argument", "no_recipients", "bad_address")
        return EX_DATAERR if exc.code in refused else EX_TEMPFAIL
    except Unreachable:
        pass  # no daemon: queue it in the store directly
    else:
        return EX_OK
    try:
        _submit_direct(content, sender, recipients, opts.full_name)
    except NoStore as exc:
        print(f"spoolerd-sendmail: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except Exception as exc:
        code = getattr(exc, "code", "")
        print(f"spoolerd-sendmail: could not queue the message: {exc}", file=sys.stderr)
        return (
            EX_CONFIG
            if code == "bad_config"
            else EX_DATAERR
            if code in ("invalid_argument", "bad_address", "no_recipients")
            else EX_TEMPFAIL
        )
    return EX_OK


if __name__ == "__main__":
    sys.exit(main())

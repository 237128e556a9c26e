"""``spoolerd-sendmail`` without a daemon: the message queued in the default store directly, where the
daemon finds it when it starts (plain sendmail and ``-bs`` both fall back to it). Only ``os`` and ``sys`` are
imported with the module: the rest is imported when a message is queued this way, off sendmail's fast
path.
"""

from __future__ import annotations

import os
import sys

from .client import config_file

TYPE_CHECKING = False  # typing is not imported at run time: sendmail's start-up is most of a submit
if TYPE_CHECKING:
    from typing import Any

__all__ = ["NoStore", "submit_direct"]


class NoStore(Exception):
    """No daemon answers and no store to write into could be found."""


def _fallback_config() -> str | None:
    """The config whose default store we may write into: $SPOOLERD_CONFIG, else the system file, else
    the embedded default, but only where its store already exists (never a new ./spool by accident)."""
    path = config_file()
    if path is not None:
        if os.path.exists(path) and not os.access(path, os.R_OK):
            # the daemon's own file (0640 under systemd): a user who may submit only through the daemon
            # waits for it, a temporary failure (75), not an error in the configuration (78)
            raise NoStore(f"this user may not read {path}, so it cannot queue the message itself")
        return path
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0] or "spool"
    if os.path.exists(os.path.join(state, "spool.db")):
        return None
    raise NoStore("there is no store to queue into (set SPOOLERD_CONFIG)")


def _state_owner(state_dir: os.PathLike[str]) -> int:
    """The uid the daemon runs as: the owner of its state directory."""
    try:
        return os.stat(state_dir).st_uid
    except OSError:
        return 0


def submit_direct(
    content: bytes,
    sender: str | None,
    recipients: list[str],
    reports: dict[str, Any],
    full_name: str | None = None,
) -> str:
    """No daemon: queue the message in the default store ourselves (the daemon picks it up later)."""
    config_path = _fallback_config()
    import anyio

    from .config import load_config, open_stores
    from .dsn_params import DsnRequest
    from .logsetup import SyslogStream, configure_logging
    from .maillog import accepted
    from .message_size import check_message_size
    from .outgoing import outgoing_draft, submit_outgoing
    from .plugins import PluginRegistry
    from .retention import filing
    from .submit_rules import SubmissionRequest, complete_submission, trusted

    async def run() -> str:
        registry = PluginRegistry()
        config = load_config(config_path, registry)
        # the accepted line: on a terminal, for the person who ran it; else to syslog, as Postfix's
        # commands log (cron mails a job's stderr, and a command that queued its message says nothing)
        tty = sys.stderr.isatty()
        configure_logging(config.log, None if tty else SyslogStream(config.log.syslog, "spoolerd-sendmail"))
        check_message_size(len(content), config.spooler.message_size_limit)  # as the daemon would
        uid = os.getuid()
        trusts = trusted(config, uid, _state_owner(config.spooler.state_dir))
        dsn = DsnRequest.parsed(  # as the daemon reads them (InvalidArgument: refused, exit 65)
            reports.get("ret"), reports.get("envid"), reports.get("notify"), reports.get("recipient_dsn")
        )
        env = complete_submission(
            config, SubmissionRequest(content, sender, recipients, uid, trusts, full_name, dsn)
        )
        opened = open_stores(config, registry)
        store = opened.stores[opened.default]
        await store.start()
        try:
            filed = filing(config.stores[opened.default].sent_copies)
            draft = await outgoing_draft(
                store, env.content, env.recipients, sender=env.sender, subject=env.subject,
                sentmail=filed.sentmail, delete_after_submit=filed.delete_after_submit,
                ndr_requested=reports.get("ndr", True), dr_requested=reports.get("dr", False),
                dsn=env.dsn,
            )  # fmt: skip
            message_id = await submit_outgoing(store, draft, preprocess=True)  # one transaction
            accepted(
                queue_id=message_id,
                store=opened.default,
                content=env.content,
                sender=env.sender,
                recipients=len(env.recipients),
                via="sendmail",
            )
            return message_id
        finally:
            await store.stop()

    return anyio.run(run)

"""Who may use the control socket, and for what, as Postfix splits it: anyone it lets in may submit, list
the queue, flush it and see the status (Postfix's ``authorized_submit_users``, ``authorized_mailq_users``
and ``authorized_flush_users`` are everyone by default), while reading, deleting or holding someone's
mail, taking a transport offline and reloading the configuration (``postcat``, ``postsuper``, ``postfix
reload``: root) are for the daemon's administrators: root, the daemon's own uid, ``[control] admin_uids``
and members of ``admin_groups``. Without the split, a user added to the group "to let them submit" could
read and delete everyone's mail.
"""

from __future__ import annotations

import grp
import os
from collections.abc import Iterable
from dataclasses import dataclass

from ..config import ControlSection
from ..errors import ConfigError

__all__ = ["USER_COMMANDS", "ControlAccess", "access_problems", "group_id"]

# what a user the socket lets in may ask; every other command is an administrator's
USER_COMMANDS = frozenset({"ping", "status", "queue", "submit", "flush", "verify"})


def group_id(group: str | int, key: str = "control.allowed_groups") -> int:
    """A control group by name or number (``key``: the setting that names it, for the error)."""
    if isinstance(group, int):
        return group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise ConfigError([f"{key}: no group named {group!r}"]) from exc


@dataclass(frozen=True, slots=True)
class ControlAccess:
    """The uids and gids let in, and those of them that administer (root and the daemon's own uid always)."""

    uids: frozenset[int]
    gids: frozenset[int]
    admin_uids: frozenset[int]
    admin_gids: frozenset[int]
    socket_group: int | None  # the socket file's group: its members can open it (mode 0660)

    @classmethod
    def of(cls, control: ControlSection) -> ControlAccess:
        """From the settings (ConfigError: each group name that does not exist)."""
        problems: list[str] = []
        gids = _group_ids(control.allowed_groups, "control.allowed_groups", problems)
        admin_gids = _group_ids(control.admin_groups, "control.admin_groups", problems)
        if problems:
            raise ConfigError(problems)
        admins = frozenset({0, os.getuid(), *control.admin_uids})
        return cls(
            uids=admins | frozenset(control.allowed_uids),
            gids=frozenset(gids + admin_gids),
            admin_uids=admins,
            admin_gids=frozenset(admin_gids),
            socket_group=next(iter(gids + admin_gids), None),
        )

    def admits(self, uid: int, groups: Iterable[int]) -> bool:
        return uid in self.uids or not self.gids.isdisjoint(groups)

    def administers(self, uid: int, groups: Iterable[int]) -> bool:
        return uid in self.admin_uids or not self.admin_gids.isdisjoint(groups)


def _group_ids(groups: Iterable[str | int], key: str, problems: list[str]) -> list[int]:
    """The gids of ``groups``; each that does not exist is a line added to ``problems``."""
    found = []
    for group in groups:
        try:
            found.append(group_id(group, key))
        except ConfigError as exc:
            problems.extend(exc.problems)
    return found


def access_problems(control: ControlSection) -> list[str]:
    """Each group these settings name that does not exist, as a line of a config error."""
    try:
        ControlAccess.of(control)
    except ConfigError as exc:
        return exc.problems
    return []

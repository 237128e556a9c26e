"""File-system helpers for durability: what a power loss must not undo."""

from __future__ import annotations

import contextlib
import os

__all__ = ["fsync_directory", "make_dirs_durably", "unwritable"]


def fsync_directory(path: str) -> None:
    """fsync the directory that holds ``path``, so a file created there survives a power loss."""
    fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs_durably(directory: str) -> None:
    """``mkdir -p``, fsyncing the parent of every directory it creates."""
    missing = []
    current = os.path.abspath(directory)
    while not os.path.isdir(current):
        missing.append(current)
        current = os.path.dirname(current)
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o750)
        fsync_directory(path)


def unwritable(path: str, *, directory: bool = False) -> str | None:
    """Why this process could not write ``path`` (a file, or a directory with ``directory``), or create
    it where it is missing (its nearest existing parent must be a writable directory); None: it can."""
    target = os.path.abspath(path)
    if os.path.exists(target):
        if directory and not os.path.isdir(target):
            return f"{target} is not a directory"
        wanted = os.W_OK | (os.X_OK if directory else os.R_OK)
        return None if os.access(target, wanted) else f"{target} is not writable by this user"
    parent = os.path.dirname(target)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"cannot create {target}: {parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create {target}: {parent} is not writable by this user"
    return None

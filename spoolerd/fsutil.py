"""File-system helpers for durability: what a power loss must not undo."""

from __future__ import annotations

import contextlib
import os

__all__ = ["fsync_directory", "make_dirs_durably"]


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

"""File-system helpers: durability (what a power loss must not undo) and the safety of secret files."""

from __future__ import annotations

import contextlib
import os
import stat

__all__ = ["fsync_directory", "keep_private", "make_dirs_durably", "unsafe_secret", "unwritable"]


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


def keep_private(path: str, *, create: bool = True) -> None:
    """Mail is for its owner's and group's eyes only: ``path`` created 0660 (less the umask), or, when it
    exists and is this user's, other users' permissions taken off (a file made under a umask of 022, or
    by an earlier version: its directory may be open to all). SQLite gives its WAL and shared-memory
    files the database file's permissions when it creates them."""
    if create:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o660)
        except FileExistsError:
            pass
        else:
            os.close(fd)
            return
    try:  # looked at and changed through one descriptor: the file checked is the file changed (a link
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)  # is followed: an
        # operator's database elsewhere; a FIFO or a device there is neither waited on nor changed)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return  # gone, not a file, or not ours to read: SQLite says what is wrong when it opens it
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o007 and st.st_uid == os.geteuid() and stat.S_ISREG(st.st_mode):
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~0o007)
    finally:
        os.close(fd)


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


def unsafe_secret(path: str) -> str | None:
    """Why a secret file (a private key) must not be used, as OpenDKIM's ``RequireSafeKeys`` says it:
    it is not a regular file, or users other than its owner and the members of a group this process is
    in may read or write it. None: it is safe (and exists)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or type(exc).__name__}"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o006:
        return f"{path} can be read or written by any user (mode {mode:04o}; chmod o-rwx it)"
    if mode & 0o060 and st.st_gid != os.getegid() and st.st_gid not in os.getgroups():
        return (
            f"{path} can be read or written by group {st.st_gid}, which this process is not in"
            f" (mode {mode:04o}; chmod g-rw it, or give it the daemon's group)"
        )
    return None

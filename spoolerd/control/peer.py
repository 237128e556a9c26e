"""Who is at the other end of the control socket: the peer's pid, uid and gid (SO_PEERCRED) and its
groups, primary and supplementary (SO_PEERGROUPS), as they were when it connected."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from pathlib import Path

from anyio.abc import SocketAttribute, SocketStream

__all__ = ["peer_credentials", "peer_groups"]

_PEERCRED = struct.Struct("3i")


def peer_credentials(stream: SocketStream) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix stream socket."""
    raw: socket.socket = stream.extra(SocketAttribute.raw_socket)
    pid, uid, gid = _PEERCRED.unpack(raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return pid, uid, gid


_SO_PEERGROUPS = 59  # Linux 4.13 (<asm-generic/socket.h>); Python 3.11's socket module lacks the name
_GID = struct.Struct("I")
_MOST_GROUPS = 65536  # NGROUPS_MAX
_PY_GETSOCKOPT_MOST = 1024  # octets socket.getsockopt may ask for: 256 groups


def peer_groups(raw: socket.socket, pid: int, gid: int) -> set[int]:
    """The primary and supplementary groups of the process at the other end of a Unix socket, as they
    were when it connected, as SO_PEERCRED's ids are (a later setgroups, or a pid reused meanwhile,
    changes nothing); from ``/proc`` as they are now on a kernel without SO_PEERGROUPS."""
    try:
        packed = raw.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, _PY_GETSOCKOPT_MOST)
    except OSError as exc:
        if exc.errno != errno.ERANGE:
            return _groups_of(pid, gid)
        packed = _many_peer_groups(raw.fileno())  # more than Python's getsockopt has room for
    return {gid, *(group for (group,) in _GID.iter_unpack(packed))}


def _many_peer_groups(fd: int) -> bytes:
    """SO_PEERGROUPS through libc, with room for every group a process may have."""
    size = ctypes.c_uint(_MOST_GROUPS * _GID.size)
    buffer = ctypes.create_string_buffer(size.value)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.getsockopt(fd, socket.SOL_SOCKET, _SO_PEERGROUPS, buffer, ctypes.byref(size)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return buffer.raw[: size.value]


def _groups_of(pid: int, gid: int) -> set[int]:
    groups = {gid}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                groups.update(int(g) for g in line.split()[1:])
    except OSError:
        pass  # the client is gone already; its primary group is all we know
    return groups

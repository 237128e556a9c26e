"""A control client's groups are those it had when it connected (SO_PEERGROUPS), as its uid is: a
setgroups after connecting, or its pid reused by another process, changes nothing."""

from __future__ import annotations

import os
import socket

import pytest

from spoolerd.control.peer import peer_groups

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="setgroups needs root")


def test_the_groups_are_this_process_s() -> None:
    left, right = socket.socketpair()
    with left, right:
        assert peer_groups(left, os.getpid(), os.getgid()) == {os.getgid(), *os.getgroups()}


@root_only
def test_the_groups_are_those_at_connect_time() -> None:
    before = os.getgroups()
    os.setgroups([4242, 4343])
    try:
        left, right = socket.socketpair()
        os.setgroups([4444])  # after connecting: /proc would say this
        with left, right:
            assert peer_groups(left, os.getpid(), os.getgid()) == {os.getgid(), 4242, 4343}
    finally:
        os.setgroups(before)


@root_only
@pytest.mark.parametrize("count", [256, 257, 3000])  # Python's getsockopt has room for 256
def test_many_groups_are_all_read_as_at_connect_time(count: int) -> None:
    before = os.getgroups()
    many = list(range(50_000, 50_000 + count))
    os.setgroups(many)
    try:
        left, right = socket.socketpair()
        os.setgroups([4444])  # after connecting: /proc would say this
        with left, right:
            assert peer_groups(left, os.getpid(), os.getgid()) == {os.getgid(), *many}
    finally:
        os.setgroups(before)

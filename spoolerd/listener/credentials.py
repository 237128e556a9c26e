"""The listener's credentials file: one ``user:scrypt$N$r$p$SALT$HASH`` line per user (SALT and HASH in
base64), hashed with the standard library's scrypt so no password is ever stored. Blank lines and lines
starting with ``#`` are ignored. Make a line with::

    python -m spoolerd.listener.credentials alice >> /etc/spoolerd/smtp-users   # asks for the password
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

__all__ = ["Credentials", "hash_password", "load_credentials"]

_N, _R, _P = 2**14, 8, 1  # ~50 ms and 16 MB a check: slow for a guesser, fine for a login


@dataclass(frozen=True, slots=True)
class _Hash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def matches(self, password: bytes) -> bool:
        found = hashlib.scrypt(
            password,
            salt=self.salt,
            n=self.n,
            r=self.r,
            p=self.p,
            maxmem=256 * 1024 * 1024,
            dklen=len(self.digest),
        )
        return hmac.compare_digest(found, self.digest)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def _parse_hash(text: str) -> _Hash:
    scheme, n, r, p, salt, digest = text.split("$")
    if scheme != "scrypt":
        raise ValueError(f"unknown scheme {scheme!r}")
    return _Hash(int(n), int(r), int(p), base64.b64decode(salt), base64.b64decode(digest))


class Credentials:
    """Users and their password hashes; ``check`` never says which of the two was wrong."""

    def __init__(self, users: dict[str, _Hash]) -> None:
        self._users = users
        self._decoy = _parse_hash(hash_password("", salt=b"\0" * 16))  # same cost for unknown users

    def check(self, user: str, password: bytes) -> bool:
        known = self._users.get(user)
        ok = (known or self._decoy).matches(password)
        return ok and known is not None

    def __len__(self) -> int:
        return len(self._users)


def load_credentials(path: Path, where: str) -> Credentials:
    """Read the file; a ConfigError names the key (``where``), the line and the problem, never a hash."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"{where}: cannot read {path}: {exc.strerror or exc}"]) from exc
    users: dict[str, _Hash] = {}
    problems = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, hashed = line.partition(":")
        try:
            parsed = _parse_hash(hashed)
        except (ValueError, TypeError):
            parsed = None
        if parsed is None or not colon or not user or not user.isprintable() or " " in user:
            problems.append(f"{where}: {path} line {number}: not user:scrypt$N$r$p$salt$hash")
            continue
        users[user] = parsed
    if problems:
        raise ConfigError(problems)
    return Credentials(users)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or ":" in args[0]:
        print(
            "usage: python -m spoolerd.listener.credentials USER  (password on stdin or asked)",
            file=sys.stderr,
        )
        return 64
    password = getpass.getpass() if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    print(f"{args[0]}:{hash_password(password)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

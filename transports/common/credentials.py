"""Where a server's secrets come from: a password file or environment variable, and an XOAUTH2 access
token from a file (re-read for each connection, so whatever renews it need not tell us) or from a command
(cached until it expires, fetched again when the server refuses it). Errors name the source, never the
secret."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import anyio
from pydantic import BaseModel, Field, field_validator, model_validator

from spoolerd.errors import ConfigError, TransportError
from spoolerd.wiretext import has_control

__all__ = ["Credentials", "SecretSources"]

_COMMAND_TIMEOUT = 30.0
_EXPIRY_MARGIN = 60.0  # a token this close to expiry is renewed before use


def _first_line(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TransportError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from exc
    except UnicodeDecodeError:  # its message would quote a byte of the secret
        raise TransportError(f"cannot read {path}: not UTF-8 text") from None
    secret = text.splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise TransportError(f"{path} is empty")
    return secret


class SecretSources(BaseModel):
    """Settings keys naming the login and where its secret lives (never the secret itself)."""

    username: str | None = Field(None, description="login identity; no username: no login")
    password_file: Path | None = Field(None, description="file whose first line is the password")
    password_env: str | None = Field(None, description="environment variable holding the password")
    token_file: Path | None = Field(None, description="XOAUTH2: file holding the access token (re-read)")
    token_command: list[str] | None = Field(
        None, description="XOAUTH2: command printing a token, or JSON with access_token and expires_in"
    )
    token_lifetime: float = Field(3000.0, gt=0, description="seconds a command's plain token is reused")

    @field_validator("username")
    @classmethod
    def _username(cls, username: str | None) -> str | None:
        if username is not None and (not username or has_control(username)):
            raise ValueError("must be non-empty and free of control characters")
        return username

    @model_validator(mode="after")
    def _one_source_each(self) -> Self:
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give password_file or password_env, not both")
        if self.token_file is not None and self.token_command is not None:
            raise ValueError("give token_file or token_command, not both")
        if self.token_command is not None and not self.token_command:
            raise ValueError("token_command: give the command and its arguments as a list")
        if self.username is None and (self.has_password or self.has_token):
            raise ValueError("a password or token is configured but no username")
        return self

    @property
    def has_password(self) -> bool:
        return self.password_file is not None or self.password_env is not None

    @property
    def has_token(self) -> bool:
        return self.token_file is not None or self.token_command is not None


class Credentials:
    """The username and a way to get the current secret; ``check`` fails early on what is missing."""

    def __init__(self, settings: SecretSources, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.username = settings.username
        self._clock = clock
        self._token: str | None = None
        self._token_until = 0.0

    def check(self) -> None:
        """Before start (``spoolerd check-config`` and ``run`` alike): a configured file must be readable,
        a variable set, a token command present and executable. Every problem names its key."""
        s = self.settings
        problems = []
        for key, path in (("password_file", s.password_file), ("token_file", s.token_file)):
            if path is None:
                continue
            try:
                _first_line(path)
            except TransportError as exc:
                problems.append(f"{key}: {exc}")
        if s.password_env is not None and not os.environ.get(s.password_env):
            problems.append(f"password_env: the environment variable {s.password_env} is not set")
        if s.token_command is not None and shutil.which(s.token_command[0]) is None:
            problems.append(f"token_command: {s.token_command[0]} is not an executable program")
        if problems:
            raise ConfigError(problems)

    def password(self) -> str:
        s = self.settings
        if s.password_file is not None:
            return _first_line(s.password_file)
        if s.password_env is not None:
            value = os.environ.get(s.password_env)
            if not value:
                raise TransportError(f"the environment variable {s.password_env} is not set")
            return value
        raise TransportError("no password configured")

    async def token(self, *, renew: bool = False) -> str:
        s = self.settings
        if s.token_file is not None:
            return _first_line(s.token_file)
        if s.token_command is None:
            raise TransportError("no token configured")
        if renew or self._token is None or self._clock() >= self._token_until:
            self._token, lifetime = await self._run_token_command(s.token_command)
            self._token_until = self._clock() + max(0.0, lifetime - _EXPIRY_MARGIN)
        return self._token

    def forget_token(self) -> None:
        self._token = None

    async def _run_token_command(self, command: list[str]) -> tuple[str, float]:
        name = Path(command[0]).name
        try:
            with anyio.fail_after(_COMMAND_TIMEOUT):
                done = await anyio.run_process(command, check=False, stderr=subprocess.DEVNULL)
        except TimeoutError as exc:
            raise TransportError(
                f"token command {name} did not finish within {_COMMAND_TIMEOUT:g} s"
            ) from exc
        except OSError as exc:
            raise TransportError(f"token command {name} could not run: {exc.strerror or exc}") from exc
        if done.returncode != 0:
            raise TransportError(f"token command {name} exited with status {done.returncode}")
        return _parse_token(done.stdout, name, self.settings.token_lifetime)


def _parse_token(output: bytes, name: str, default_lifetime: float) -> tuple[str, float]:
    """A bare token (one line), or JSON with ``access_token`` and optionally ``expires_in`` seconds."""
    text = output.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
            token, lifetime = data["access_token"], float(data.get("expires_in", default_lifetime))
        except (ValueError, KeyError, TypeError):  # not chained: their messages would quote the output
            raise TransportError(f"token command {name} printed JSON without a usable access_token") from None
        if not isinstance(token, str):
            raise TransportError(f"token command {name} printed a non-string access_token")
    else:
        token, lifetime = (text.splitlines() or [""])[0].strip(), default_lifetime
    if not token or any(ord(c) < 0x21 or ord(c) == 0x7F for c in token):
        raise TransportError(f"token command {name} printed no usable token")
    return token, lifetime

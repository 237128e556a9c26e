"""Durations as operators write them: ``30d``, ``12h``, ``1d12h``, ``90m``, ``45s``, ``2w``, or seconds.

Pure functions with no I/O, shared by the configuration (``sent_retention = "30d"``) and spoolerctl
(``purge sent --older-than 30d``), so both accept exactly the same spellings.
"""

from __future__ import annotations

import math
import re

from .errors import InvalidArgument

__all__ = ["UNITS", "format_duration", "parse_duration"]

UNITS: dict[str, int] = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(rf"({_NUMBER})([wdhms])")
_WHOLE = re.compile(rf"(?:{_NUMBER}[wdhms])+|{_NUMBER}")


def parse_duration(text: str | int | float) -> float:
    """Seconds in ``text``: a bare number is seconds, else one or more number-and-unit parts (w, d, h,
    m, s), e.g. ``1d12h``. Negative, infinite and malformed values raise ``InvalidArgument``."""
    if isinstance(text, bool):
        raise InvalidArgument(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        spelled = text.strip(" \t").lower()
        if not _WHOLE.fullmatch(spelled):
            raise InvalidArgument(
                f"not a duration: {text!r} (write seconds, or a number with a unit: 30d, 12h, 90m, 45s, 2w)"
            )
        if spelled[-1].isalpha():
            seconds = sum(float(n) * UNITS[unit] for n, unit in _PART.findall(spelled))
        else:
            seconds = float(spelled)
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidArgument(f"not a duration: {text!r} (it must be a finite number of seconds, 0 or more)")
    return seconds


def format_duration(seconds: float) -> str:
    """A spelling ``parse_duration`` reads back (exact for whole seconds, to the nanosecond otherwise):
    604800 -> ``7d``, 5400 -> ``1h30m``, 0.5 -> ``0.5s``."""
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidArgument(f"not a duration: {seconds!r}")
    whole = math.floor(seconds)
    fraction = seconds - whole
    parts = []
    for unit in "dhm":
        count, whole = divmod(whole, UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    if whole or fraction or not parts:
        parts.append(f"{whole + fraction:.9f}".rstrip("0").rstrip(".") + "s")
    return "".join(parts)

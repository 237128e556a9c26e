"""Durations as operators write them (config ``sent_retention``, ``spoolerctl purge --older-than``)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolerd.duration import UNITS, format_duration, parse_duration
from spoolerd.errors import InvalidArgument


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * 86400),
        ("12h", 43200),
        ("90m", 5400),
        ("45s", 45),
        ("2w", 14 * 86400),
        ("1d12h", 129600),
        ("1.5d", 129600),
        (" 7D ", 7 * 86400),
        ("3600", 3600),
        ("0", 0),
        (".5s", 0.5),
        (86400, 86400),
        (0.25, 0.25),
    ],
)
def test_spellings(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad",
    ["", "d", "-1d", "1x", "1d 2h", "1e5", "inf", "nan", "1d-2h", "7d\n", "7d\r\nX: y", -1, math.nan, True],
)
def test_malformed_durations_are_refused_by_name(bad: str | float) -> None:
    with pytest.raises(InvalidArgument, match="not a duration"):
        parse_duration(bad)


@given(st.integers(min_value=0, max_value=10**12))
def test_whole_seconds_read_back_exactly(seconds: int) -> None:
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert text == format_duration(parse_duration(text))


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_any_duration_reads_back_to_the_nanosecond(seconds: float) -> None:
    assert math.isclose(parse_duration(format_duration(seconds)), seconds, rel_tol=1e-12, abs_tol=1e-9)


@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(sorted(UNITS))), min_size=1, max_size=5))
def test_parts_add_up(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    assert parse_duration(text) == sum(n * UNITS[unit] for n, unit in parts)


@given(st.text(max_size=12))
def test_anything_else_is_a_duration_or_a_clear_refusal(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except InvalidArgument as exc:
        assert "not a duration" in str(exc)
        assert "\n" not in str(exc) and "\r" not in str(exc)  # the input is quoted, never echoed raw
    else:
        assert math.isfinite(seconds) and seconds >= 0

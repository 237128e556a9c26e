"""The side-by-side benchmarks in their smallest mode, so they cannot rot: each runs against the real
Postfix and smtp-sink and writes its JSON (the numbers themselves are not judged here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers.postfix import available

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def postfix_here() -> None:
    reason = available()
    if reason is not None:
        if os.environ.get("SPOOLERD_REQUIRE_PEERS"):
            pytest.fail(reason)
        pytest.skip(reason)


def run_bench(script: str, out: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.timeout(300)
def test_relay_bench_quick(tmp_path: Path) -> None:
    done = run_bench("relay.py", tmp_path / "relay.json")
    rows = json.loads((tmp_path / "relay.json").read_text())
    assert [row["leg"] for row in rows] == ["held", "socket", "smtp"]
    for row in rows:
        for side in ("spoolerd", "postfix"):
            assert row[side]["messages_per_second"] > 0, row
            assert row[side]["peak_rss_mb"] > 0, row
        assert row["ratio"] > 0 and len(row["load_before"]) == len(row["load_after"]) == 3, row
    assert "held" in done.stdout and "ratio" in done.stdout


@pytest.mark.timeout(300)
def test_sendmail_bench_quick(tmp_path: Path) -> None:
    """It also proves that a submit imports no dependency: the command runs from a venv without them."""
    done = run_bench("sendmail.py", tmp_path / "sendmail.json")
    result = json.loads((tmp_path / "sendmail.json").read_text())
    for side in ("spoolerd", "postfix"):
        assert result[side]["submits_per_second"] > 0 and result[side]["latency_p50_ms"] > 0, result
    assert result["submits_ratio"] > 0 and result["latency_p50_ratio"] > 0, result
    assert "serial submits/s" in done.stdout

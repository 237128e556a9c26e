"""The project's own promises: the README's commands, CI running them, type checks and lint."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README.md must open with a sh code block"
    return [
        line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def test_readme_opens_with_exactly_two_commands() -> None:
    run, test = readme_commands()
    assert "spoolerd run" in run and "pytest" in test


def test_ci_runs_the_readme_test_command() -> None:
    test_command = readme_commands()[-1]
    assert "pytest" in test_command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci, ".ci/run must call the README's test command verbatim"


def test_top_level_layout_is_the_designed_one() -> None:
    for name in (
        "pyproject.toml",
        "spoolerd",
        "stores",
        "transports",
        "config",
        "tests",
        "bench",
        "README.md",
    ):
        assert (ROOT / name).exists(), name


def test_core_imports_no_plugin_by_name() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "spoolerd").rglob("*.py")
        if re.search(r"^\s*(from|import)\s+(stores|transports)\b", path.read_text(), re.M)
    ]
    assert offenders == [], "spoolerd/ must find stores and transports only through entry points"


@pytest.mark.timeout(300)
def test_mypy_strict() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "spoolerd", "stores", "transports"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    result = subprocess.run(
        [ruff, "check", "spoolerd", "stores", "transports", "tests", "bench"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr

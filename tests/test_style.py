"""The code passes the linter and the formatter with the settings in pyproject.toml."""

import subprocess
import sys

import pytest

from clientrisk.config import PROJECT_DIR


def ruff(*args):
    command = [sys.executable, "-m", "ruff", *args]
    return subprocess.run(command, cwd=PROJECT_DIR, capture_output=True, text=True)


@pytest.mark.parametrize(
    "args", [("check", "."), ("format", "--check", ".")], ids=["check", "format"]
)
def test_ruff(args):
    result = ruff(*args)
    assert result.returncode == 0, result.stdout + result.stderr

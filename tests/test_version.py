"""`--version` on every script: its name and the package's version, exit code 0."""

import importlib
import subprocess
import sys

import pytest

from clientrisk import __version__
from clientrisk.config import PROJECT_DIR

SCRIPTS = (
    "ingestion", "training", "scoring", "deployment", "ranking", "diagnostics", "reporting",
    "apicalls", "fullprocess", "app",
)  # fmt: skip


@pytest.mark.parametrize("script", SCRIPTS)
def test_version(script, capsys):
    module = importlib.import_module(script)
    with pytest.raises(SystemExit) as stopped:
        module.main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"{script}.py {__version__}\n"


def test_version_of_fullprocess_as_cron_would_run_it():
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "fullprocess.py"), "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"fullprocess.py {__version__}\n"

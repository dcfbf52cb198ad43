"""cronjob.txt and the command that installs it."""

import os
import stat
import subprocess
import sys

import pytest

from clientrisk.config import PROJECT_DIR

INSTALL = [sys.executable, str(PROJECT_DIR / "scripts" / "install_cron.py")]


@pytest.fixture
def crontab(tmp_path):
    """A fake `crontab` on PATH that keeps the table in a file; yields (env, table path)."""
    table = tmp_path / "table"
    fake = tmp_path / "bin" / "crontab"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        f'table="{table}"\n'
        'if [ "$1" = "-l" ]; then\n'
        '  [ -f "$table" ] || { echo "no crontab for $USER" >&2; exit 1; }\n'
        '  cat "$table"\n'
        'elif [ "$1" = "-" ]; then cat > "$table"\n'
        "fi\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    return env, table


def install(env, *args):
    return subprocess.run([*INSTALL, *args], env=env, capture_output=True, text=True)


def test_cron_line_runs_every_ten_minutes_with_absolute_paths(crontab):
    env, _ = crontab
    line = install(env, "--print", "--python", "/opt/venv/bin/python").stdout.strip()
    assert line == (
        f"*/10 * * * * /opt/venv/bin/python {PROJECT_DIR}/fullprocess.py"
        f" >> {PROJECT_DIR}/logs/cron.log 2>&1"
    )


def test_install_is_idempotent_and_keeps_other_lines(crontab):
    env, table = crontab
    table.write_text("0 3 * * * /usr/bin/backup\n")
    assert install(env).returncode == 0
    assert install(env).returncode == 0
    lines = table.read_text().splitlines()
    assert lines[0] == "0 3 * * * /usr/bin/backup"
    assert sum("fullprocess.py" in line for line in lines) == 1
    assert lines[1].startswith("*/10 * * * * ")


def test_install_into_an_empty_crontab_and_remove(crontab):
    env, table = crontab
    assert install(env).returncode == 0
    assert "fullprocess.py" in table.read_text()
    assert install(env, "--remove").returncode == 0
    assert "fullprocess.py" not in table.read_text()


def test_without_crontab(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}
    result = install(env)
    assert result.returncode == 1
    assert "crontab is not installed" in result.stderr

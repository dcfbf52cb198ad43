"""Install the line of cronjob.txt in the user's crontab, with this project's paths filled in.

Idempotent: a line that already runs this project's fullprocess.py is replaced, not added again,
and every other line of the crontab is kept.

Usage:
    python scripts/install_cron.py            # install (or update) the line
    python scripts/install_cron.py --print    # only show the line
    python scripts/install_cron.py --remove   # take it out again
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
CRON_FILE = PROJECT_DIR / "cronjob.txt"


def default_python() -> Path:
    """The project's virtual environment if there is one, else the Python running this."""
    venv = PROJECT_DIR / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def cron_line(python: Path) -> str:
    template = next(
        line
        for line in CRON_FILE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    return template.format(python=shlex.quote(str(python)), project=shlex.quote(str(PROJECT_DIR)))


def marker() -> str:
    """What identifies this project's line in a crontab."""
    return f"{shlex.quote(str(PROJECT_DIR))}/fullprocess.py"


def read_crontab() -> str:
    try:
        result = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    except FileNotFoundError:
        raise SystemExit("crontab is not installed (Debian: apt-get install cron)") from None
    if result.returncode != 0:
        if "no crontab" in result.stderr.lower():
            return ""
        raise SystemExit(f"crontab -l failed: {result.stderr.strip()}")
    return result.stdout


def with_line(crontab: str, line: str | None) -> str:
    """`crontab` without this project's line, then with `line` (when given) at the end."""
    kept = [entry for entry in crontab.splitlines() if marker() not in entry]
    if line:
        kept.append(line)
    return "".join(f"{entry}\n" for entry in kept)


def write_crontab(text: str) -> None:
    result = subprocess.run(["crontab", "-"], input=text, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"crontab - failed: {result.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", type=Path, default=default_python(), help="Python to run")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--print", action="store_true", help="show the line, change nothing")
    action.add_argument("--remove", action="store_true", help="remove this project's line")
    args = parser.parse_args(argv)
    line = cron_line(args.python.absolute())
    if args.print:
        print(line)
        return 0
    (PROJECT_DIR / "logs").mkdir(exist_ok=True)
    write_crontab(with_line(read_crontab(), None if args.remove else line))
    print("removed this project's line from the crontab" if args.remove else f"installed: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

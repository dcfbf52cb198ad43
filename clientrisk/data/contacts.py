"""The clients the managers contacted: CSV files in the folder `contacts_folder_path` names.

Each file has a header with the columns `corporation` and `date` (the day of the contact, as
YYYY-MM-DD; more columns are ignored). Every file in the folder is read on every run: the files
are small and the managers may correct them. A row that cannot be used (no corporation, a date
that is not a date or lies in the future) is named by its file and line with the reason, and the
other rows are used; a file that cannot be read at all (no such columns, not text) is named with
the reason and left out.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

logger = logging.getLogger(__name__)

COLUMNS = ("corporation", "date")
PROBLEMS_KEPT = 20  # problems said in full; beyond, only counted
MAX_FILE_BYTES = 64 * 2**20


@dataclass
class Contacts:
    """Every usable contact: the first contact day on or after a given day, per client."""

    days: dict[str, list[date]] = field(default_factory=dict)
    files: int = 0
    rows: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append(text)
        logger.warning("contacts: %s", text)

    def contacted_since(self, clients, since: date) -> list[bool]:
        """For each client, whether a contact on or after day `since` is recorded."""
        return [any(day >= since for day in self.days.get(client, ())) for client in clients]

    def summary(self) -> dict:
        return {
            "files": self.files,
            "rows": self.rows,
            "clients": len(self.days),
            "problems": self.problems,
            "problem_count": self.problem_count,
        }


def read_contacts(folder: Path | None, today: date | None = None) -> Contacts | None:
    """The contacts recorded in the CSV files of `folder`, or None when no folder is set.

    A folder that is set but missing is a problem said once, not an error: the list is made as
    without contacts.
    """
    if folder is None:
        return None
    today = today or datetime.now(UTC).date()
    found = Contacts()
    try:
        paths = sorted(path for path in Path(folder).iterdir() if path.suffix.lower() == ".csv")
    except OSError as error:
        found.problem(f"{folder}: cannot read the contacts folder: {error.strerror or error}")
        return found
    for path in paths:
        _read_file(path, today, found)
    return found


def _read_file(path: Path, today: date, found: Contacts) -> None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            found.problem(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB; left out")
            return
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        found.problem(f"{path}: cannot be read: {error.strerror or error}; left out")
        return
    except UnicodeDecodeError as error:
        found.problem(f"{path}: not UTF-8 text (byte {error.start}); left out")
        return
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip().lower() for name in next(reader, [])]
    except csv.Error as error:
        found.problem(f"{path} line 1: {error}; left out")
        return
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        found.problem(
            f"{path}: no column {', '.join(repr(name) for name in missing)} (the header has"
            f" {', '.join(header) or 'nothing'}); left out"
        )
        return
    client_at, day_at = header.index("corporation"), header.index("date")
    found.files += 1
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            problem = _row_problem(row, client_at, day_at, today)
            if isinstance(problem, str):
                found.problem(f"{path} line {line}: {problem}")
                continue
            client, day = problem
            found.days.setdefault(client, []).append(day)
            found.rows += 1
    except csv.Error as error:
        found.problem(f"{path} line {reader.line_num}: {error}; the rest of the file left out")


def _row_problem(row: list[str], client_at: int, day_at: int, today: date):
    """(corporation, day) of a usable row, else the reason it cannot be used."""
    if len(row) <= max(client_at, day_at):
        return f"{len(row)} fields where the header has {max(client_at, day_at) + 1} or more"
    client, text = row[client_at].strip(), row[day_at].strip()
    if not client:
        return "no corporation"
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return f"date {text[:40]!r} is not a day as YYYY-MM-DD"
    if day > today:
        return f"date {day.isoformat()} lies in the future"
    return client, day

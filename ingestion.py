"""Ingest every client CSV in the input folder into one deduplicated `finaldata.csv`.

Bad files and bad rows are skipped with a `file:line: reason` message; the good ones go through.
What was read is recorded in `ingestedfiles.txt` (name, SHA-256, rows accepted and rejected, time).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from project import (
    COLUMNS,
    Config,
    DataError,
    IngestedFile,
    RejectedFile,
    atomic_write_text,
    build_parser,
    format_ingestion_record,
    list_input_files,
    log_rejections,
    read_client_csv,
    read_ingestion_record,
    run_cli,
    sha256_file,
    utc_now,
    write_csv,
)

logger = logging.getLogger(__name__)


@dataclass
class IngestionResult:
    entries: list[IngestedFile]
    rows: int
    duplicates_dropped: int
    final_data_path: Path

    @property
    def summary(self) -> str:
        used = sum(entry.status == "ingested" for entry in self.entries)
        rejected_rows = sum(entry.rows_rejected for entry in self.entries)
        rejected_files = sum(entry.status == "rejected" for entry in self.entries)
        return (
            f"ingested {used} of {len(self.entries)} files: {self.rows} rows"
            f" ({self.duplicates_dropped} duplicates dropped, {rejected_rows} rows and"
            f" {rejected_files} files rejected) -> {self.final_data_path}"
        )


def read_input_file(path: Path, sha256: str, ingested_at: str):
    """Read one file.

    Returns:
        (its record entry, the good rows or None when the file is rejected whole).
    """
    try:
        batch = read_client_csv(path)
    except RejectedFile as error:
        logger.warning("%s", error)
        return IngestedFile(path.name, sha256, 0, 0, ingested_at, "rejected", error.reason), None
    log_rejections(batch.rejections, path.name)
    entry = IngestedFile(
        path.name, sha256, len(batch.frame), len(batch.rejections), ingested_at, "ingested"
    )
    return entry, batch.frame


def ingest_files(paths: list[Path], previous: list[IngestedFile]):
    """Read `paths`, each distinct content once, in the order they were first ingested.

    A file already in `previous` under the same name and content keeps its place and its first
    ingestion time, so re-ingesting an unchanged folder writes the same record and the same data;
    new files follow by name, so the last rows of a client are its newest.

    Returns:
        (record entries, frames of the good rows in record order).
    """
    first_seen = {(entry.file, entry.sha256): entry.ingested_at for entry in previous}
    position = {key: index for index, key in enumerate(first_seen)}
    now = utc_now()
    hashed = [(path, sha256_file(path)) for path in paths]
    hashed.sort(
        key=lambda item: (position.get((item[0].name, item[1]), len(position)), item[0].name)
    )
    entries, frames, seen = [], [], {}
    for path, sha256 in hashed:
        ingested_at = first_seen.get((path.name, sha256), now)
        if sha256 in seen:
            note = f"same content as {seen[sha256]}"
            logger.info("%s: %s, not counted twice", path.name, note)
            entries.append(IngestedFile(path.name, sha256, 0, 0, ingested_at, "duplicate", note))
            continue
        seen[sha256] = path.name
        entry, frame = read_input_file(path, sha256, ingested_at)
        entries.append(entry)
        if frame is not None:
            frames.append(frame)
    return entries, frames


def combine(frames: list[pd.DataFrame]) -> tuple[pd.DataFrame, int]:
    """Concatenate and drop exact duplicate rows, keeping the first.

    Returns:
        (combined rows, number of duplicates dropped).
    """
    combined = pd.concat(frames, ignore_index=True)
    deduplicated = combined.drop_duplicates(ignore_index=True)
    return deduplicated, len(combined) - len(deduplicated)


def run(config: Config) -> IngestionResult:
    """Ingest the input folder into `finaldata.csv` and `ingestedfiles.txt`.

    Raises:
        DataError: there is no usable row at all; nothing is written then.
    """
    paths = list_input_files(config.input_dir)
    if not paths:
        raise DataError(f"{config.input_dir}: no CSV files to ingest")
    previous = read_ingestion_record(config.ingestion_record_file)
    entries, frames = ingest_files(paths, previous)
    if not frames or sum(len(frame) for frame in frames) == 0:
        raise DataError(f"{config.input_dir}: no usable rows in {len(paths)} CSV file(s)")
    data, duplicates = combine(frames)
    write_csv(data[list(COLUMNS)], config.final_data_file)
    atomic_write_text(config.ingestion_record_file, format_ingestion_record(entries))
    return IngestionResult(entries, len(data), duplicates, config.final_data_file)


def main(argv: list[str] | None = None) -> int:
    args = build_parser(__file__, __doc__).parse_args(argv)
    return run_cli(args, run)


if __name__ == "__main__":
    sys.exit(main())

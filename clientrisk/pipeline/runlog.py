"""What one run did, step by step, and the run log: `fullprocess.jsonl` in `log_folder_path`.

The run log is an export of the runs in the history database, one JSON line a run, written with
one append (lines never interleave) and rotated past RUN_LOG_MAX_BYTES.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager

from clientrisk.timestamps import utc_now

logger = logging.getLogger(__name__)

RUN_LOG_FILE = "fullprocess.jsonl"
# The run log is an export of the runs in the history database: rotated at this size, with
# this many older files kept.
RUN_LOG_MAX_BYTES = 1 << 20
RUN_LOG_KEEP = 3
# What cron writes from the runs it starts (`>> logs/cron.log 2>&1`), rotated the same way by
# each full run; cron's shell opens it afresh for every run.
CRON_LOG_FILE = "cron.log"


class RunLog:
    """What one run did, step by step; ends as its record in the history."""

    def __init__(self):
        self.started = time.monotonic()
        self.run_id = None
        self.record = {"started_at": utc_now(), "steps": {}}

    @contextmanager
    def step(self, name: str):
        """Time a step; a step that does not end keeps its name as `current_step`."""
        logger.info("%s ...", name)
        self.record["current_step"] = name
        started = time.perf_counter()
        try:
            yield
        finally:
            self.record["steps"][name] = round(time.perf_counter() - started, 3)
        self.record.pop("current_step", None)

    def finish(self, outcome: str, reason: str, **facts) -> dict:
        self.record.update(facts, outcome=outcome, reason=reason)
        self.record["finished_at"] = utc_now()
        self.record["seconds"] = round(time.monotonic() - self.started, 3)
        return self.record


def append_run_record(config, record: dict, rotate: bool = True) -> None:
    """Add the run's line to `fullprocess.jsonl` (one append, so lines never interleave),
    rotating it, and `cron.log` beside it, past RUN_LOG_MAX_BYTES."""
    config.log_dir.mkdir(parents=True, exist_ok=True)
    path = config.log_dir / RUN_LOG_FILE
    if rotate:
        rotate_log(path)
        rotate_log(config.log_dir / CRON_LOG_FILE)
    line = (json.dumps(record, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def rotate_log(path) -> None:
    """Past RUN_LOG_MAX_BYTES, move `path` to `path.1` (and `path.1` to `path.2`, ... keeping
    RUN_LOG_KEEP older files); the next write starts it afresh."""
    if not path.exists() or path.stat().st_size <= RUN_LOG_MAX_BYTES:
        return
    for number in range(RUN_LOG_KEEP - 1, 0, -1):
        older = path.with_name(f"{path.name}.{number}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{number + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))

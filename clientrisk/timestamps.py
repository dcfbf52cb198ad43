"""Times as the pipeline writes them (UTC, to the second, ISO 8601) and as people read them."""

from __future__ import annotations

import time

# Every time the pipeline writes: UTC, to the second.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_now() -> str:
    """The current UTC time, to the second, in ISO 8601."""
    return time.strftime(TIME_FORMAT, time.gmtime())


def parse_utc(text):
    """A time the pipeline wrote, as an aware datetime; None for anything else."""
    from datetime import UTC, datetime

    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def readable_utc(stamp) -> str:
    """A time the pipeline wrote, as people read it (to the minute); anything else as it is."""
    moment = parse_utc(stamp)
    if moment is None:
        return "" if stamp is None else str(stamp)
    return moment.strftime("%Y-%m-%d %H:%M UTC")

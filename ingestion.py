"""Ingest new client CSVs from the input folder into the append-only store, as batches.

The machinery is in `clientrisk.data.ingest`.
"""

from __future__ import annotations

import sys

from clientrisk.cli import build_parser, run_cli
from clientrisk.data.ingest import run


def main(argv: list[str] | None = None) -> int:
    args = build_parser(__file__, __doc__).parse_args(argv)
    return run_cli(args, run)


if __name__ == "__main__":
    sys.exit(main())

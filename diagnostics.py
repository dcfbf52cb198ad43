"""Diagnose the deployed model and the ingested data, and rank the clients by risk of leaving.

The machinery is in `clientrisk.report.diagnostics`.
"""

from __future__ import annotations

import sys

from clientrisk.cli import build_parser, run_cli
from clientrisk.report.diagnostics import run


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(__file__, __doc__)
    parser.add_argument(
        "--time-on-copy",
        action="store_true",
        help="time ingestion and training by running them again on a copy (timing_repeats times,"
        " 3 by default); without it the timings are those fullprocess.py runs recorded",
    )
    parser.add_argument(
        "--timing-repeats",
        type=int,
        metavar="N",
        help="with --time-on-copy: run them N times (default: the config's timing_repeats)",
    )
    args = parser.parse_args(argv)
    if args.timing_repeats is not None and args.timing_repeats < 1:
        parser.error("--timing-repeats must be at least 1")
    if args.timing_repeats is not None:
        args.time_on_copy = True

    def step(config):
        repeats = args.timing_repeats or config.settings["timing_repeats"]
        return run(config, repeats if args.time_on_copy else None)

    return run_cli(args, step)


if __name__ == "__main__":
    sys.exit(main())

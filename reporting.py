"""Report on the deployed model: a confusion-matrix plot and a PDF for the client managers.

The machinery is in `clientrisk.report.summary`.
"""

from __future__ import annotations

import sys

from clientrisk.cli import build_parser, run_cli
from clientrisk.report.summary import run


def main(argv: list[str] | None = None) -> int:
    args = build_parser(__file__, __doc__).parse_args(argv)
    return run_cli(args, run)


if __name__ == "__main__":
    sys.exit(main())

"""Who to call: current clients ranked by the deployed model's probability that they leave, each
with the reasons for it, and what changed since the previous ranking.

The machinery is in `clientrisk.calllist.ranking`.
"""

from __future__ import annotations

import sys

from clientrisk.calllist.ranking import run
from clientrisk.cli import build_parser, run_cli


def main(argv: list[str] | None = None) -> int:
    args = build_parser(__file__, __doc__).parse_args(argv)
    return run_cli(args, run)


if __name__ == "__main__":
    sys.exit(main())

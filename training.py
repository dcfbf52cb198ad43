"""Train the attrition model on the ingested data and save it as `trainedmodel.pkl`.

The machinery is in `clientrisk.model.training`.
"""

from __future__ import annotations

import sys

from clientrisk.cli import build_parser, run_cli
from clientrisk.model.training import run


def main(argv: list[str] | None = None) -> int:
    args = build_parser(__file__, __doc__).parse_args(argv)
    return run_cli(args, run)


if __name__ == "__main__":
    sys.exit(main())

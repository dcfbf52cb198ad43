"""Deploy the trained model with its score and ingestion record, or roll back to an earlier one.

The machinery is in `clientrisk.deployment.deploy`.
"""

from __future__ import annotations

import sys

from clientrisk.cli import build_parser, run_cli
from clientrisk.deployment.deploy import run


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(__file__, __doc__)
    parser.add_argument(
        "--rollback",
        nargs="?",
        const="previous",
        metavar="VERSION",
        help="make an earlier deployment live again: the one before the live one, or VERSION"
        " (a number such as 3, or v0003)",
    )
    parser.add_argument("--reason", help="why, for the deployment history")
    parser.add_argument(
        "--force",
        action="store_true",
        help="deploy a model that fullprocess.py kept out after comparing it with the live one",
    )
    args = parser.parse_args(argv)
    return run_cli(args, lambda config: run(config, args.rollback, args.reason, args.force))


if __name__ == "__main__":
    sys.exit(main())

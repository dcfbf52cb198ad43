"""Call every endpoint of the running API and write the answers to `apireturns.txt`.

The machinery is in `clientrisk.api.client`.
"""

from __future__ import annotations

import sys

from clientrisk.api.client import DEFAULT_URL, URL_ENV, run
from clientrisk.cli import build_parser, run_cli


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(__file__, __doc__)
    parser.add_argument(
        "--url", help=f"base URL of the API (default: ${URL_ENV}, else {DEFAULT_URL})"
    )
    args = parser.parse_args(argv)
    return run_cli(args, lambda config: run(config, args.url))


if __name__ == "__main__":
    sys.exit(main())

"""The HTTP API on Flask's own server, for trying it out: `python app.py` (production: wsgi.py).

The application (routes, the model watcher, errors) is built by `clientrisk.api.app.create_app`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from clientrisk.api.app import create_app
from clientrisk.cli import add_version, configure_logging
from clientrisk.config import default_config_path
from clientrisk.errors import PipelineError

logger = logging.getLogger("app")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="app.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        type=Path,
        default=default_config_path(beside=__file__),
        help="config file (default: $RISK_CONFIG, else config.json)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    add_version(parser)
    args = parser.parse_args(argv)
    configure_logging()
    try:
        app = create_app(args.config)
    except PipelineError as error:
        logger.error("%s", error)
        return error.exit_code
    app.run(host=args.host, port=args.port, debug=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

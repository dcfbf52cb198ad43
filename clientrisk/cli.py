"""What every step script's command line shares: its options, logging, signals and exit codes."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path

from clientrisk.config import CONFIG_ENV, default_config_path, load_config
from clientrisk.errors import PipelineError, Stopped

logger = logging.getLogger(__name__)

# Loggers of libraries that chatter at debug level about their own workings.
NOISY_LOGGERS = ("matplotlib", "PIL", "urllib3", "fontTools")


def configure_logging(verbose: bool = False) -> None:
    """Human-readable, timestamped log lines on stderr; `verbose` adds this project's debug
    lines, never the libraries' own."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def stop_on_signals():
    """Turn SIGTERM and SIGINT into `Stopped`, so that a stopped step unwinds (temporary files
    removed, one line said) instead of dying mid-write or printing a traceback."""
    import signal

    def stop(number, frame):
        name = signal.Signals(number).name
        raise Stopped(name, 128 + number)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def build_parser(script: str, description: str | None):
    """An argument parser with the options every step script has.

    Args:
        script: the script's `__file__`, which names it in messages.
        description: the script's docstring; its first line becomes the help text.
    """
    import argparse

    summary = description.strip().splitlines()[0] if description else None
    parser = argparse.ArgumentParser(prog=Path(script).name, description=summary)
    parser.add_argument(
        "--config",
        type=Path,
        default=default_config_path(beside=script),
        help="config file; relative paths in it are resolved against its folder"
        f" (default: ${CONFIG_ENV}, else config.json beside the scripts)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")
    parser.set_defaults(script=Path(parser.prog).stem)
    return parser


def run_cli(args, step) -> int:
    """Load the config, run `step(config)` and print its one-line summary.

    Returns:
        The process exit code: 0, or the failure's own code after one line on stderr.
    """
    configure_logging(args.verbose)
    try:
        with stop_on_signals():
            config = load_config(args.config)
            logger.debug("%s: config %s", args.script, config.path)
            result = step(config)
    except PipelineError as error:
        logger.error("%s: %s", args.script, error)
        return error.exit_code
    except OSError as error:
        logger.error("%s: %s", args.script, error)
        return 1
    except Stopped as stopped:
        logger.error(
            "%s: stopped by %s; nothing half-written was kept", args.script, stopped.signal_name
        )
        return stopped.exit_code
    print(result.summary)
    return 0

"""What every step script's command line shares: its options, logging, signals and exit codes."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path

from clientrisk import __version__
from clientrisk.config import CONFIG_ENV, default_config_path, load_config
from clientrisk.errors import PipelineError, Stopped

logger = logging.getLogger(__name__)

# Loggers of libraries that chatter at debug level about their own workings.
NOISY_LOGGERS = ("matplotlib", "PIL", "urllib3", "fontTools")
# Local time with its offset from UTC, so that lines from machines or seasons apart compare.
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
LOG_TIME_FORMAT = "%Y-%m-%d %H:%M:%S %z"


def configure_logging(verbose: bool = False) -> None:
    """Human-readable log lines on stderr, each with its time and time zone; `verbose` adds
    this project's debug lines, never the libraries' own. Library warnings (such as
    scikit-learn's) become one log line each instead of text printed beside the log."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=LOG_FORMAT,
        datefmt=LOG_TIME_FORMAT,
        stream=sys.stderr,
        force=True,
    )
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    capture_warnings()


class OneLineWarning(logging.Filter):
    """A captured warning as one line: its place, category and message, without the source
    line that `warnings` prints under it."""

    def filter(self, record: logging.LogRecord) -> bool:
        lines = record.getMessage().splitlines()
        record.msg = " ".join(line.strip() for line in lines if line and not line.startswith(" "))
        record.args = ()
        return True


def capture_warnings() -> None:
    """Send warnings through logging (the `py.warnings` logger), one line each."""
    # Off first: captureWarnings(True) does nothing while it believes it is on, even after
    # something else (a test's warnings recorder) has put its own handler back.
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    warnings_logger = logging.getLogger("py.warnings")
    if not any(isinstance(item, OneLineWarning) for item in warnings_logger.filters):
        warnings_logger.addFilter(OneLineWarning())


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
    add_version(parser)
    parser.set_defaults(script=Path(parser.prog).stem)
    return parser


def add_version(parser) -> None:
    """`--version`: the script's name and the package's version, then exit 0."""
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="show the version"
    )


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

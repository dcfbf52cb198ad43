"""The errors every step raises: reported as one line with their exit code, never a traceback."""

from __future__ import annotations


class PipelineError(Exception):
    """A failure the user can act on: reported as one line, never as a traceback."""

    exit_code = 1


class ConfigError(PipelineError):
    """The config file is missing, unreadable or wrong."""

    exit_code = 2


class DataError(PipelineError):
    """Input data that cannot be used."""


class Stopped(BaseException):
    """The process was asked to stop (SIGTERM or SIGINT): unwinds every step, like Ctrl-C."""

    def __init__(self, signal_name: str, exit_code: int):
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.exit_code = exit_code

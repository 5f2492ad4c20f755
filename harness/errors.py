"""User-facing error types: each message says what happened and what to do about it."""


class HilError(Exception):
    """Base class of errors the harness reports to the user without a traceback."""


class ConfigError(HilError):
    """The lab configuration or a command-line option is invalid."""


class MissingToolError(HilError):
    """A program or privilege the harness needs is not available."""


class LabError(HilError):
    """Setting up or using the network lab failed."""


class BoardError(HilError):
    """The board could not be reached, flashed or brought online."""


class DutTimeoutError(BoardError):
    """The DUT did not answer within the allowed time."""

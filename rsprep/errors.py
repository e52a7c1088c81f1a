"""The one error hierarchy of rsprep.

Every error a user can cause derives from :class:`RsprepError` and also from the builtin exception
that matches its kind, so callers may catch either. Messages name the file or value, what was
expected, and how to fix it; the CLI prints them on one line.
"""

from __future__ import annotations


class RsprepError(Exception):
    """Base class of all errors that rsprep reports to users."""


class InputNotFoundError(RsprepError, FileNotFoundError):
    """An input file or folder does not exist."""


class InvalidProductError(RsprepError, ValueError):
    """A Sentinel-2 product is not a readable SAFE product (missing or malformed metadata)."""


class MissingBandFilesError(RsprepError, FileNotFoundError):
    """Band files listed in a product's metadata are missing or do not have the declared size."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class InvalidParameterError(RsprepError, ValueError):
    """A parameter value is outside what the operation accepts."""


class OutputExistsError(RsprepError, FileExistsError):
    """An output exists already and overwriting was not requested."""


class ReaderError(RsprepError, KeyError):
    """A patch is not in a dataset, or a store is not what a reader expects."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WriteError(RsprepError, OSError):
    """Writing an output failed (a full disk, a file-size limit, no permission); nothing was replaced."""

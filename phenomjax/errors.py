"""Errors a user can act on: each names the file or field and what was expected."""

from __future__ import annotations


class PhenomjaxError(Exception):
    """Base class; the CLI prints these as one line instead of a traceback."""


class ConfigError(PhenomjaxError, ValueError):
    """A config file or a --set override is malformed (unknown key, bad type, bad value)."""


class DataError(PhenomjaxError, ValueError):
    """Input data (bits, weights, logs, tables) violates the contract of docs/design.md §2 and 4."""


class RunDirError(PhenomjaxError):
    """A run directory is missing, truncated, or does not match what was asked of it."""


class UnsafePickleError(DataError):
    """A legacy pickle asked to build an object outside the allowed numpy/containers set."""


class NonFiniteLossError(PhenomjaxError, FloatingPointError):
    """Training produced a NaN or infinite loss; what was written before it is kept."""

"""The package's version, on the ground floor so that every layer can record it."""

from importlib.metadata import PackageNotFoundError, version

try:  # one home for the version: pyproject.toml, read back from the installed metadata
    __version__ = version("phenomjax")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

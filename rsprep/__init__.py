"""rsprep: build deep-learning-ready remote-sensing datasets (reBEN and friends) from raw archives."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rsprep")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

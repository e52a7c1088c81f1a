"""What the root command decides for every command: how much to say (``-v``/``-q``).

Commands read it from here, never from ``rsprep.cli.main``, so no command imports the root.
"""

from __future__ import annotations

_state = {"verbosity": 0}


def set_verbosity(level: int) -> None:
    """-1 for ``--quiet`` (errors only, no progress bars), else the count of ``-v``."""
    _state["verbosity"] = level


def verbosity() -> int:
    return _state["verbosity"]


def quiet() -> bool:
    """True when the user asked for logs only (no progress bars)."""
    return _state["verbosity"] < 0

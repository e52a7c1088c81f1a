"""The switch of the GeoTIFF layout's folders into place (docs/convert.md): renames only, recorded first
in a journal (``.rsprep-tiff.switch.json``) so that a run killed mid-switch is completed by the next run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from rsprep.errors import WriteError
from rsprep.formats.resumable import say_log
from rsprep.store.atomic import write_json_atomic

#: The journal of the switch of the three layout folders, written before the first rename.
SWITCH = ".rsprep-tiff.switch.json"


def switch(root: Path, built: Path, folders: tuple[str, ...]) -> None:
    """Move the layout folders built in ``built`` into ``root`` with renames only.

    The journal lists the folders to switch before the first rename; each old folder is renamed into
    ``.rsprep-tiff.old-<pid>`` and the new one into place, then the journal and the rest are removed.
    A run killed on the way leaves the journal, and :func:`finish_switch` completes it.
    """
    names = [d for d in folders if (built / d).is_dir()]
    write_json_atomic(root / SWITCH, {"from": built.name, "folders": names})
    _fsync_dir(root)
    finish_switch(root, say=lambda _msg: None)


def finish_switch(root: Path, say=say_log) -> bool:
    """Complete a switch of the layout folders that ``root``'s journal records (roll forward).

    Call with the layout's lock held. Every folder still in the partial build goes into place (the old
    one, if any, moved aside first); then the old folders, the partial build and the journal are
    removed. Returns whether there was a journal.
    """
    try:
        journal = json.loads((root / SWITCH).read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as exc:
        raise WriteError(
            5, f"{root / SWITCH} is unreadable ({exc}); remove it and run the conversion again"
        ) from exc
    built, old = root / journal["from"], root / f".rsprep-tiff.old-{os.getpid()}"
    for d in journal["folders"]:
        if not (built / d).is_dir():
            continue  # already switched
        if os.path.lexists(root / d):
            old.mkdir(exist_ok=True)
            os.rename(root / d, old / d)
        os.rename(built / d, root / d)
    _fsync_dir(root)
    for path in [old, built, *root.glob(".rsprep-tiff.old-*")]:
        shutil.rmtree(path, ignore_errors=True)
    (root / SWITCH).unlink()
    say(f"finished the interrupted switch of the GeoTIFF layout in {root}")
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

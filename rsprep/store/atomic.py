"""Atomic file writes: the one temp-and-rename of rsprep, and input fingerprints.

Everything rsprep writes goes to a hidden temporary sibling first and is renamed into place only when
complete, so a crash, a full disk or ``kill -9`` never leaves a file or folder that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def fingerprint_files(paths: list[Path]) -> dict[str, Any]:
    """Size and modification time of each input file, and one digest of them all.

    Cheap enough for 1 GB products (no hashing of contents); a re-downloaded or edited file changes
    its size or mtime and so invalidates the stage.
    """
    files = {}
    for p in sorted(paths, key=str):
        st = p.stat()
        files[str(p.resolve())] = [st.st_size, st.st_mtime_ns]
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"digest": digest, "files": files}


def digest(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary sibling and a rename."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def temp_sibling(path: Path) -> Path:
    """A hidden name beside ``path``, unique to this process."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def replace_path(tmp: Path, dest: Path) -> None:
    """Move ``tmp`` to ``dest``, replacing a file or folder there, never leaving ``dest`` half-written."""
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        os.replace(tmp, dest)


@contextlib.contextmanager
def building(dest: Path, *, folder: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``dest`` to build in; move it to ``dest`` only on success.

    With ``folder`` the sibling is created as an empty folder; otherwise the caller writes a file there.
    """
    tmp = temp_sibling(dest)
    _remove(tmp)
    if folder:
        tmp.mkdir(parents=True)
    try:
        yield tmp
        replace_path(tmp, dest)
    except OSError as exc:
        raise _write_error(dest, exc) from exc
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and a rename."""
    tmp = temp_sibling(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    finally:
        tmp.unlink(missing_ok=True)


def _write_error(dest: Path, exc: OSError) -> OSError:
    """``exc`` with the output it was writing named (an error that already names a file is kept)."""
    from rsprep.errors import RsprepError, WriteError

    if isinstance(exc, RsprepError) or exc.filename:
        return exc
    return WriteError(
        exc.errno,
        f"writing {dest} failed ({exc.strerror or exc}); the previous version, if any, is untouched: "
        "free disk space (or raise the file-size limit) and run the command again",
    )

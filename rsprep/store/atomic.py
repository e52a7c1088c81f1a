"""Atomic file writes: the one temp-and-rename of rsprep, and input fingerprints.

Everything rsprep writes goes to a hidden temporary sibling first and is renamed into place only when
complete, so a crash, a full disk or ``kill -9`` never leaves a file or folder that looks finished.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Seconds a build waits for another holder of its output's lock (e.g. a dead run's worker that its
#: watchdog is about to stop) before it gives up with :class:`rsprep.store.lock.LockedError`.
LOCK_WAIT = 5.0


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
    """Move the complete ``tmp`` to ``dest``, replacing a file or folder there.

    ``dest`` is never missing or half-written: where the file system supports it the two are swapped
    in one atomic ``renameat2(RENAME_EXCHANGE)`` and the old version (now at ``tmp``) is removed;
    elsewhere the old version is renamed aside first. ``tmp`` is checked before ``dest`` is touched.
    """
    if not os.path.lexists(tmp):
        raise FileNotFoundError(errno.ENOENT, f"the finished build {tmp} of {dest} has disappeared", str(tmp))
    if not os.path.lexists(dest):
        os.replace(tmp, dest)
        return
    if _exchange(tmp, dest):
        _remove(tmp)
        return
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    _remove(old)
    os.replace(dest, old)
    os.replace(tmp, dest)
    _remove(old)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` atomically (Linux ``renameat2``); False where that is not supported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def building(dest: Path, *, folder: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``dest`` to build in; move it to ``dest`` only on success.

    With ``folder`` the sibling is created as an empty folder; otherwise the caller writes a file there.
    The build holds ``dest``'s lock (:func:`rsprep.store.lock.locked`, waiting up to
    :data:`LOCK_WAIT` seconds), so two runs never build one output at once; taking it removes the
    temporaries that dead runs left beside ``dest``.
    """
    from rsprep.store.lock import locked

    with locked(dest, "output", wait=LOCK_WAIT):
        tmp = temp_sibling(dest)
        _remove(tmp)
        if folder:
            tmp.mkdir(parents=True)
        try:
            yield tmp
            replace_path(tmp, dest)
        except OSError as exc:
            raise write_error(dest, exc) from exc
        finally:
            _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def boot_id() -> str | None:
    """This boot of the machine (Linux), or None: what a partial build written without syncs is bound to."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def sync_filesystem(path: Path) -> None:
    """Flush everything written to the file system that holds ``path`` to disk (Linux ``syncfs``; elsewhere
    ``os.sync``): one sync for a whole output instead of one ``fsync`` per file.

    Raises:
        OSError: the flush failed (an I/O error or a full disk surfacing late), naming ``path``.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fn = ctypes.CDLL(None, use_errno=True).syncfs
        except (OSError, AttributeError):
            os.sync()
            return
        if fn(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncing the file system of {path} failed: {os.strerror(err)}", str(path))
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and a rename."""
    tmp = temp_sibling(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise write_error(path, exc) from exc
    finally:
        tmp.unlink(missing_ok=True)


def write_error(dest: Path, exc: OSError) -> OSError:
    """``exc`` with the output it was writing named (an error that already names a file is kept)."""
    from rsprep.errors import RsprepError, WriteError

    if isinstance(exc, RsprepError) or exc.filename:
        return exc
    return WriteError(
        exc.errno,
        f"writing {dest} failed ({exc.strerror or exc}); the previous version, if any, is untouched: "
        "free disk space (or raise the file-size limit) and run the command again",
    )

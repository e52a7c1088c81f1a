"""One lock per output: a work store, a dataset folder, a conversion target (docs/architecture.md#locks).

A lock is an advisory ``flock`` on a hidden sibling ``.<name>.lock`` of the output, taken before any
temporary is touched and held for the whole run. The file records its holder (pid, host, command,
start time) so that a second run can say who holds it. The kernel drops a ``flock`` when its holder
dies, however it dies (``kill -9`` included), so a lock left by a dead process is simply taken over:
the new holder first stops the dead run's worker processes (recorded beside the lock by
:mod:`rsprep.store.pool`) and then removes the dead run's temporaries (:func:`sweep_temporaries`).

``flock`` works on local file systems and on NFS (Linux emulates it with POSIX locks there); on a
cluster file system mounted without lock support, ``flock`` fails with ``ENOLCK`` and the error says so.

A process may take the lock of one output more than once (``rsprep build`` holds the work store's
lock while it calls the stages, which take it too); the lock is released when the outermost holder exits.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rsprep.errors import RsprepError

#: Temporaries that rsprep writers leave while they work: ``.<name>.tmp-<pid>`` and ``.<name>.old-<pid>``.
TEMPORARY = re.compile(r"^\.(.+)\.(?:tmp|old)-(\d+)$")


class LockedError(RsprepError, BlockingIOError):
    """Another run holds the lock of an output."""


@dataclass
class _Held:
    fd: int
    depth: int
    lock_path: Path


_held: dict[Path, _Held] = {}


def lock_path(output: Path) -> Path:
    """The lock file of ``output``: a hidden sibling ``.<name>.lock``."""
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


def workers_path(output: Path) -> Path:
    """Where the worker processes of the holder of ``output``'s lock are recorded."""
    return lock_path(output).with_name(lock_path(output).name + ".workers")


def held_locks() -> list[Path]:
    """The outputs this process holds locks on (handed to worker processes to register themselves)."""
    return list(_held)


@contextlib.contextmanager
def locked(output: str | Path, what: str, *, wait: float = 0.0, sweep: bool = True) -> Iterator[dict]:
    """Hold the lock of ``output`` (described as ``what`` in messages) for the ``with`` block.

    Yields the previous holder's record when it was left by a dead process (it was taken over),
    else an empty dict. With ``sweep`` a take-over also removes the dead run's temporaries of
    ``output`` (and inside it, when it is a folder). ``wait`` seconds are spent retrying before giving up.

    Raises:
        LockedError: another live process holds it; the message names pid, host, command and start time.
    """
    output = Path(os.path.abspath(output))
    held = _held.get(output)
    if held is not None:
        held.depth += 1
        try:
            yield {}
        finally:
            held.depth -= 1
        return
    path = lock_path(output)
    fd = _acquire(path, output, what, wait)
    _held[output] = _Held(fd, 1, path)
    try:
        previous = _read_holder(fd)
        taken_over = previous if previous and previous.get("pid") != os.getpid() else {}
        _write_holder(fd)
        if taken_over:
            stop_workers(output)
        workers_path(output).unlink(missing_ok=True)
        if sweep:
            sweep_temporaries(output)
        yield taken_over
    finally:
        del _held[output]
        _release(fd, path, output)


def _acquire(path: Path, output: Path, what: str, wait: float) -> int:
    deadline = time.monotonic() + wait
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LockedError(
                    exc.errno,
                    f"cannot lock {what} {output} ({exc.strerror}); the file system of {path.parent} "
                    "may not support flock: mount it with lock support or build on a local disk",
                ) from exc
            if time.monotonic() >= deadline:
                raise LockedError(errno.EWOULDBLOCK, _busy_message(what, output, holder, path)) from None
            time.sleep(0.1)
            continue
        # The previous holder may have removed the file between our open and our lock: retry then.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _busy_message(what: str, output: Path, holder: dict, path: Path) -> str:
    who = (
        f"process {holder.get('pid')} on {holder.get('host')} (started {holder.get('started')}: "
        f"{holder.get('command')})"
        if holder
        else "another process"
    )
    return (
        f"{what} {output} is in use by {who}; wait for that run to finish or stop it, then run again "
        f"(the lock is {path}; it is released automatically when its holder exits)"
    )


def _read_holder(fd: int) -> dict:
    try:
        data = os.pread(fd, 65536, 0)
        return json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}


def _write_holder(fd: int) -> None:
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:500],
    }
    data = json.dumps(record).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _release(fd: int, path: Path, output: Path) -> None:
    workers_path(output).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.unlink()  # while still holding it: a waiter that opened the old file retries (inode check)
    os.close(fd)


def stop_workers(output: Path) -> list[int]:
    """Kill the recorded worker processes of a dead holder of ``output``'s lock that are still alive.

    A worker is recorded as ``pid start-time`` (the start time from ``/proc``), so a pid reused by
    an unrelated process is never touched. Returns the pids it killed.
    """
    killed = []
    try:
        lines = workers_path(output).read_text().split("\n")
    except OSError:
        return killed
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            continue
        pid = int(parts[0])
        if pid != os.getpid() and process_start(pid) == parts[1]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    for pid in killed:  # wait until they are gone, so none of them renames anything afterwards
        deadline = time.monotonic() + 5
        while process_start(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
    return killed


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, from /proc), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if fields and fields[0] == "Z":  # a zombie does nothing any more
        return None
    return fields[19] if len(fields) > 19 else None


def sweep_temporaries(output: Path) -> list[Path]:
    """Remove temporaries of dead runs beside ``output`` and, for a folder, inside it (one level).

    Only names of the form ``.<name>.tmp-<pid>`` / ``.<name>.old-<pid>`` are removed, and only when
    their process is gone from this host (a live process's temporary, e.g. another output's
    ``build.json`` update, is left alone). Inside a folder, a temporary of ``<name>`` is also kept
    while ``<name>``'s lock is held, which protects builds by other hosts of a shared file system
    (array jobs). Resumable ``.partial`` builds are kept. The caller holds ``output``'s lock.
    """
    output = Path(output)
    beside = [p for p in _listdir(output.parent) if p.name.startswith(f".{output.name}.")]
    inside = _listdir(output) if output.is_dir() else []
    removed = []
    for p in beside + inside:
        m = TEMPORARY.match(p.name)
        if not m or int(m.group(2)) == os.getpid() or process_start(int(m.group(2))) is not None:
            continue
        if p.parent != output.parent and not _free(p.parent / m.group(1)):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _free(output: Path) -> bool:
    """Whether nobody (on any host sharing the file system) holds ``output``'s lock right now."""
    if output in _held:
        return True
    try:
        with locked(output, "output", sweep=False):
            return True
    except LockedError:
        return False


def _listdir(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []

"""``checksums.sha256``: the SHA-256 of every file of a dataset folder, the LMDB hashed per key.

Format (``sha256sum``-compatible), one line per entry, sorted by path::

    <sha256, 64 lowercase hex digits>  <path relative to the dataset folder, '/'-separated>
    <sha256 of the value>  lmdb/data.mdb::<key>

Every file of the folder is listed except ``checksums.sha256`` and ``build.json`` at the top (build.json
is rewritten by every later stage), every ``lock.mdb``, hidden files and everything in hidden folders
(temporaries, ``.partial`` builds) and the LMDB file ``data.mdb`` itself: its bytes depend on the map
size and page layout, so the environment is listed as one line per key holding the SHA-256 of that key's
value (its logical content). A path holding a backslash or a newline is written the way ``sha256sum``
does (a leading ``\\``, then ``\\\\`` and ``\\n``). Files are read in 1 MiB blocks, in threads.

``sha256sum -c`` verifies the file lines (``grep -v 'data.mdb::' checksums.sha256 | sha256sum -c``);
``rsprep validate`` checks all of them, and that no file or key is there that the list lacks.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rsprep.errors import InputNotFoundError, RsprepError
from rsprep.formats.lmdb import LmdbReader
from rsprep.store.atomic import building
from rsprep.store.dataset import BUILD
from rsprep.validation.report import Recorder
from rsprep.validation.view import DatasetView

CHECKSUMS = "checksums.sha256"
LMDB_FILE, LOCK_FILE = "data.mdb", "lock.mdb"
KEY_SEP = "::"
BLOCK = 1 << 20
#: Threads hashing files and LMDB values (hashlib releases the GIL on large buffers).
WORKERS = min(8, os.cpu_count() or 1)
#: LMDB values handed to the threads at once.
_BATCH = 256
_LINE = re.compile(r"^(\\?)([0-9a-fA-F]{64}) [ *](.+)$")


class ChecksumError(RsprepError, OSError):
    """A file or LMDB environment of the dataset could not be read while hashing it."""


def write_checksums(dataset: str | Path) -> tuple[Path, int]:
    """Write ``dataset/checksums.sha256`` (atomically); returns its path and the number of entries.

    Raises:
        InputNotFoundError: ``dataset`` is not a folder.
        ChecksumError: a file or the LMDB could not be read.
    """
    root = Path(dataset)
    if not root.is_dir():
        raise InputNotFoundError(f"dataset folder {root} does not exist")
    files, lmdbs = dataset_files(root)
    entries = []
    for rel, digest in zip(files, _hash_files(root, files), strict=True):
        if isinstance(digest, OSError):
            raise ChecksumError(f"cannot read {root / rel} to hash it ({digest})")
        entries.append((rel, digest))
    for rel in lmdbs:
        entries.extend((f"{rel}{KEY_SEP}{key}", digest) for key, digest in lmdb_digests(root / rel))
    entries.sort()
    dest = root / CHECKSUMS
    with building(dest, folder=False) as tmp, tmp.open("w", encoding="utf-8", newline="\n") as f:
        f.writelines(_line(path, digest) for path, digest in entries)
    return dest, len(entries)


def dataset_files(root: Path) -> tuple[list[str], list[str]]:
    """(files, LMDB data.mdb files) of the folder that checksums.sha256 covers, relative, sorted."""
    files, lmdbs = [], []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel_dir = Path(folder).relative_to(root).as_posix()
        for name in names:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if name.startswith(".") or name == LOCK_FILE or rel in (CHECKSUMS, BUILD):
                continue
            (lmdbs if name == LMDB_FILE else files).append(rel)
    return sorted(files), sorted(lmdbs)


def lmdb_digests(data_mdb: Path) -> Iterator[tuple[str, str]]:
    """(key, SHA-256 of its value) of every key of the environment, in key order.

    Raises:
        ChecksumError: the environment cannot be opened or read.
    """
    import lmdb

    try:
        env = LmdbReader(data_mdb.parent).env
        with env.begin(buffers=True) as txn, ThreadPoolExecutor(WORKERS) as pool:
            batch: list[tuple[str, memoryview]] = []
            for key, value in txn.cursor():
                batch.append((bytes(key).decode("utf-8", "backslashreplace"), value))
                if len(batch) == _BATCH:
                    yield from _hash_batch(pool, batch)
                    batch = []
            yield from _hash_batch(pool, batch)
    except lmdb.Error as exc:
        raise ChecksumError(f"cannot read the LMDB {data_mdb} ({exc})") from exc


def _hash_batch(pool: ThreadPoolExecutor, batch: list[tuple[str, memoryview]]) -> Iterator[tuple[str, str]]:
    digests = pool.map(lambda kv: hashlib.sha256(kv[1]).hexdigest(), batch)
    return zip((k for k, _ in batch), digests, strict=True)


def _hash_files(root: Path, rels: Iterable[str]) -> Iterator[str | OSError]:
    """The SHA-256 of each file (or the OSError reading it raised), in order."""
    with ThreadPoolExecutor(WORKERS) as pool:
        yield from pool.map(lambda rel: _file_sha256(root / rel), rels)


def _file_sha256(path: Path) -> str | OSError:
    h = hashlib.sha256()
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    try:
        with path.open("rb", buffering=0) as f:
            while n := f.readinto(buf):
                h.update(view[:n])
    except OSError as exc:
        return exc
    return h.hexdigest()


def _line(path: str, digest: str) -> str:
    if "\\" in path or "\n" in path:
        return f"\\{digest}  {path.replace(chr(92), chr(92) * 2).replace(chr(10), chr(92) + 'n')}\n"
    return f"{digest}  {path}\n"


def _unescape(path: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), path)


# --------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------
def run(view: DatasetView, rec: Recorder, sampling) -> None:
    root = view.root
    listed = _read(root / CHECKSUMS, rec)
    if listed is None:
        rec.skip(f"no {CHECKSUMS} (write it with `rsprep validate --write-checksums`)")
        return
    files, lmdbs = dataset_files(root)
    by_lmdb: dict[str, dict[str, str]] = {}
    listed_files = {}
    for path, digest in listed.items():
        rel, sep, key = path.partition(KEY_SEP)
        if sep and (rel == LMDB_FILE or rel.endswith(f"/{LMDB_FILE}")):
            by_lmdb.setdefault(rel, {})[key] = digest
        else:
            listed_files[path] = digest
    _check_files(root, files, listed_files, rec)
    for rel in sorted(set(lmdbs) | set(by_lmdb)):
        _check_lmdb(root, rel, by_lmdb.get(rel, {}), rel in lmdbs, rec)
    rec.note(f"{len(listed)} entries of {CHECKSUMS}")


def _read(path: Path, rec: Recorder) -> dict[str, str] | None:
    """path -> digest of every well-formed line (None when the file is missing)."""
    if not path.is_file():
        return None
    out: dict[str, str] = {}
    with path.open(encoding="utf-8", errors="replace", newline="\n") as f:
        for n, line in enumerate(f, 1):
            m = _LINE.match(line.rstrip("\n"))
            path_ = (_unescape(m.group(3)) if m.group(1) else m.group(3)) if m else ""
            if not m or path_.startswith("/") or ".." in path_.split("/"):
                rec.error(
                    f"malformed line {n}: expected '<64 hex digits>  <path inside the dataset>', "
                    f"found {line.rstrip()[:80]!r}",
                    f"{CHECKSUMS}:{n}",
                )
            elif path_ in out:
                rec.error(f"line {n} lists {path_} a second time", f"{CHECKSUMS}:{n}")
            else:
                out[path_] = m.group(2).lower()
    return out


def _check_files(root: Path, files: list[str], listed: dict[str, str], rec: Recorder) -> None:
    present = set(files)
    for rel in sorted(set(listed) - present):
        if (root / rel).is_file():  # build.json, lock.mdb, a hidden file or data.mdb as one file
            rec.error(f"is listed, but {CHECKSUMS} leaves it out (data.mdb is listed per key)", rel)
        else:
            rec.error(f"missing: listed in {CHECKSUMS} but not in the dataset folder", rel)
    for rel in files:
        if rel not in listed:
            rec.error(f"not in {CHECKSUMS}: the file is in the dataset folder but not listed", rel)
    hashed = [rel for rel in files if rel in listed]
    for rel, digest in zip(hashed, _hash_files(root, hashed), strict=True):
        rec.checked()
        if isinstance(digest, OSError):
            rec.error(f"cannot be read to hash it ({digest})", rel)
        elif digest != listed[rel]:
            rec.error(f"changed: its SHA-256 is {digest}, {CHECKSUMS} says {listed[rel]}", rel)


def _check_lmdb(root: Path, rel: str, listed: dict[str, str], present: bool, rec: Recorder) -> None:
    if not present:
        rec.error(f"missing: {CHECKSUMS} lists {len(listed)} of its keys but there is no such file", rel)
        return
    seen = set()
    try:
        for key, digest in lmdb_digests(root / rel):
            where = f"{rel}{KEY_SEP}{key}"
            rec.checked()
            seen.add(key)
            want = listed.get(key)
            if want is None:
                rec.error(f"not in {CHECKSUMS}: the key is in the LMDB but not listed", where)
            elif digest != want:
                rec.error(f"changed: the value's SHA-256 is {digest}, {CHECKSUMS} says {want}", where)
    except ChecksumError as exc:
        rec.error(str(exc), rel)
        return
    for key in sorted(set(listed) - seen):
        rec.error(f"missing: listed in {CHECKSUMS} but not a key of the LMDB", f"{rel}{KEY_SEP}{key}")

"""Array jobs: ``rsprep build --shard I/N`` and ``--finalize`` (docs/build.md#shards-and-finalize).

Products are dealt to the N shards in turn, ordered by the SHA-256 of their satellite, datatake
and tile (read from the product's name). The assignment depends on the names of the products given
alone, not on their order, the host or the time, so the N shards of one build (all given the same
``--s2``) never overlap and never miss a product; the shards differ in size by at most one product
(a hash modulo N would leave some shards half as big again as the mean), and two products that would
share a store (a SAFE folder and its zip, an L1C product and the L2A made of it) land in the same shard.

Shards of one ``OUT`` run at the same time, from several hosts of a shared file system: each holds
its own lock (``OUT/shards/I-of-N.json``'s) and writes its own record there, never ``OUT/build.json``.
A shard passes through the lock of ``OUT`` only for a moment on its way in, so it refuses to start
while a full build or ``--finalize`` holds ``OUT``; these in turn hold ``OUT``'s lock and refuse while
any shard's lock is held, naming its holder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsprep.core.grid import parse_product_uri
from rsprep.errors import InvalidParameterError
from rsprep.store.atomic import write_json_atomic
from rsprep.store.lock import LockedError, locked

SHARDS = "shards"
FORMAT = "rsprep-build-shard"
#: Seconds a shard waits for ``OUT``'s lock (other shards hold it for a moment each on their way in).
GATE_WAIT = 15.0
_SPEC = re.compile(r"^\s*(-?\d+)\s*/\s*(-?\d+)\s*$")
_RECORD = re.compile(r"^(\d+)-of-(\d+)\.json$")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def name(self) -> str:
        return f"{self.index}-of-{self.count}"


def parse_shard(text: str) -> Shard:
    """``"I/N"`` as a :class:`Shard` (0 ≤ I < N).

    Raises:
        InvalidParameterError: not two integers ``I/N``, N < 1 or I outside 0..N-1 (the value named).
    """
    m = _SPEC.match(text or "")
    if not m:
        raise InvalidParameterError(
            f"--shard {text!r}: give I/N, the shard's index from 0 and the number of shards, e.g. 0/4"
        )
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1:
        raise InvalidParameterError(f"--shard {text!r}: the number of shards must be at least 1, not {count}")
    if not 0 <= index < count:
        raise InvalidParameterError(
            f"--shard {text!r}: the index must be 0..{count - 1} for {count} shard(s) (array jobs "
            f"counting from 1: pass $((SLURM_ARRAY_TASK_ID - 1))/{count})"
        )
    return Shard(index, count)


def shard_key(product: str | Path) -> str:
    """What a product's shard is computed from: satellite, datatake and tile from its name (so an L1C
    product and the L2A made of it agree), else its name without extension."""
    name = Path(product).name.removesuffix(".zip").removesuffix(".SAFE")
    try:
        n = parse_product_uri(name)
    except InvalidParameterError:
        return name
    return f"{n.mission}_{n.datatake}_T{n.tile}"


def assignment(products: Sequence[str | Path], count: int) -> dict[str, int]:
    """The shard index of every product among ``count`` shards (see the module docstring)."""
    keys = sorted({shard_key(p) for p in products}, key=lambda k: (hashlib.sha256(k.encode()).digest(), k))
    index = {k: i % count for i, k in enumerate(keys)}
    return {str(p): index[shard_key(p)] for p in products}


def select(products: Sequence[Path], shard: Shard) -> list[Path]:
    """The products of ``shard`` (in their order)."""
    where = assignment(products, shard.count)
    return [p for p in products if where[str(p)] == shard.index]


def shards_dir(out: Path) -> Path:
    return Path(out) / SHARDS


def record_path(out: Path, shard: Shard) -> Path:
    return shards_dir(out) / f"{shard.name}.json"


@contextlib.contextmanager
def shard_lock(out: Path, shard: Shard) -> Iterator[None]:
    """Hold ``shard``'s lock, taken while holding ``OUT``'s for a moment (see the module docstring).

    Raises:
        LockedError: a full build or ``--finalize`` holds ``OUT``, or the same shard runs already.
    """
    with contextlib.ExitStack() as stack:
        with locked(out, "build output", wait=GATE_WAIT, sweep=False):
            shards_dir(out).mkdir(parents=True, exist_ok=True)
            stack.enter_context(locked(record_path(out, shard), f"build shard {shard.label}", sweep=False))
        yield


@contextlib.contextmanager
def whole_lock(out: Path, what: str) -> Iterator[None]:
    """Hold ``OUT``'s lock for a full build or ``--finalize`` (``what``), refusing while a shard runs.

    Raises:
        LockedError: another build holds ``OUT``, or a shard's lock is held (its holder named).
    """
    with locked(out, "build output"):
        for lock in sorted(shards_dir(out).glob(".*.json.lock")):
            record = lock.with_name(lock.name[1:].removesuffix(".lock"))
            try:
                with locked(record, "build shard", sweep=False):
                    pass
            except LockedError as exc:
                raise LockedError(
                    exc.errno,
                    f"{what} of {out} cannot run while shard {record.stem.replace('-of-', '/')} is "
                    f"running: {exc}",
                ) from None
        yield


def write_record(out: Path, shard: Shard, record: dict[str, Any]) -> None:
    from rsprep import __version__

    data = {"format": FORMAT, "rsprep_version": __version__, "shard": shard.label, **record}
    write_json_atomic(record_path(out, shard), data)


def read_records(out: Path) -> dict[Shard, dict[str, Any]]:
    """Every shard record in ``OUT/shards``, oldest first (unreadable ones are left out)."""
    found = {}
    for path in sorted(shards_dir(out).glob("*-of-*.json"), key=lambda p: (p.stat().st_mtime, p.name)):
        m = _RECORD.match(path.name)
        if not m:
            continue
        try:
            found[Shard(int(m.group(1)), int(m.group(2)))] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return found

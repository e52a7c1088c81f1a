"""Which stage each running product is in, for the progress bar's postfix (docs/build.md#progress).

The per-product task writes its current stage into ``OUT/.progress/<digest of the product>.json``
before each stage (:func:`mark`), wherever it runs (a local worker process or a Dask worker on the
shared file system); the build polls those files (:class:`StageWatcher`) and reports each change. The
files are display only: a failure to write one never fails a product, and a run removes the files of
its own products when it ends (other shards may be running beside it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

PROGRESS = ".progress"
#: Seconds between two looks at the stage files.
INTERVAL = 0.5


def stage_file(folder: str | Path, product: str) -> Path:
    return Path(folder) / (hashlib.sha256(product.encode()).hexdigest()[:20] + ".json")


def mark(folder: str | None, product: str, stage: str) -> None:
    """Record that ``product`` starts ``stage`` (nothing when ``folder`` is None)."""
    if folder is None:
        return
    path = stage_file(folder, product)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"product": product, "stage": stage}))
        os.replace(tmp, path)
    except OSError:
        pass  # display only


class StageWatcher:
    """Polls the stage files of ``products`` in a thread and calls ``on_stage(product, stage)`` on each
    change; :meth:`close` stops it and removes those files."""

    def __init__(self, folder: Path, products: Sequence[str], on_stage: Callable[[str, str], None]) -> None:
        self.folder, self.products, self.on_stage = Path(folder), list(products), on_stage
        self._seen: dict[str, str] = {}
        self._stop = threading.Event()
        self._clear()
        self._thread = threading.Thread(target=self._run, name="rsprep-progress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            self.poll()

    def poll(self) -> None:
        for product in self.products:
            try:
                stage = json.loads(stage_file(self.folder, product).read_text())["stage"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if self._seen.get(product) != stage:
                self._seen[product] = stage
                self.on_stage(product, stage)

    def _clear(self) -> None:
        for product in self.products:
            path = stage_file(self.folder, product)
            for p in (path, *self.folder.glob(f".{path.name}.tmp-*")):  # a writer killed mid-write
                p.unlink(missing_ok=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._clear()
        with contextlib.suppress(OSError):
            self.folder.rmdir()  # only when no other shard's files are left

    def __enter__(self) -> StageWatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

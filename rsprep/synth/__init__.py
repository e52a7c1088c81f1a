"""``rsprep synth``: format-faithful synthetic archives for tests, benchmarks and the demo (docs/synth.md).

One synthetic land-cover truth drives everything: Sentinel-2 SAFE products (L2A or L1C), a CLC
GeoPackage in EPSG:3035, Sentinel-1 dB GeoTIFF scenes and a country file. ``synth.json`` records
what was generated and the truth later stages are checked against.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsprep.errors import InvalidParameterError, OutputExistsError

log = logging.getLogger(__name__)

MANIFEST_NAME = "synth.json"
CONTENTS = ("jp2", "gtiff")
LEVELS = ("L2A", "L1C")


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Defaults give the small demo archive (2 tiles × 2 dates, 4 × 4 patches)."""

    tiles: int = 2
    patches_per_side: int = 4
    full_size: bool = False
    patch_size: int = 1200
    acquisitions: int = 2
    baseline: str = "99.99"
    seed: int = 0
    s1: bool = True
    level: str = "L2A"
    content: str = "jp2"
    zip: bool = False

    def validate(self) -> None:
        from rsprep.synth.layout import check_baseline, tile_size_m

        if self.content not in CONTENTS:
            raise InvalidParameterError(f"band content {self.content!r} is not one of {', '.join(CONTENTS)}")
        if self.level not in LEVELS:
            raise InvalidParameterError(f"product level {self.level!r} is not one of {', '.join(LEVELS)}")
        check_baseline(self.baseline)
        tile_size_m(self.patches_per_side, self.patch_size, self.full_size)


Progress = Callable[[str], None]


def synthesize(
    out: str | Path,
    config: SynthConfig | None = None,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write a synthetic archive into ``out`` and return its manifest (also saved as ``synth.json``).

    The archive is built in a temporary sibling folder and renamed into place at the end, so an
    interrupted run never leaves a half-written archive that looks complete.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is false.
        InvalidParameterError: a configuration value is out of range.
    """
    cfg = config or SynthConfig()
    cfg.validate()
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(
            f"{out} exists already; pass --overwrite to replace it or choose another folder"
        )
    from rsprep.store.atomic import building
    from rsprep.synth.archive import build_archive

    out.parent.mkdir(parents=True, exist_ok=True)
    with building(out) as tmp:
        manifest = build_archive(tmp, cfg, progress or (lambda _step: None))
        (tmp / MANIFEST_NAME).write_text(
            json.dumps(manifest, indent=1, sort_keys=False) + "\n", encoding="utf-8"
        )
    return manifest


def plan_steps(cfg: SynthConfig) -> int:
    """How many progress steps :func:`synthesize` reports (for progress bars)."""
    products = cfg.tiles * cfg.acquisitions
    s1 = (cfg.acquisitions + 1) if cfg.s1 else 0
    return 1 + products + 2 + s1


def load_manifest(folder: str | Path) -> dict[str, Any]:
    """Read ``synth.json`` of a synthetic archive."""
    from rsprep.errors import InputNotFoundError

    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise InputNotFoundError(f"{path} not found; is {folder} an archive written by `rsprep synth`?")
    return json.loads(path.read_text(encoding="utf-8"))

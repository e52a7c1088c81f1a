"""L1C → L2A through ESA's sen2cor (``L2A_Process``), for L1C input to ``rsprep patch`` (docs/inputs.md)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

from rsprep.errors import InvalidProductError, RsprepError
from rsprep.store.atomic import building

log = logging.getLogger(__name__)

EXECUTABLE = "L2A_Process"
ENV_VAR = "RSPREP_SEN2COR"
INSTALL_HINT = (
    "install sen2cor from https://step.esa.int/main/snap-supported-plugins/sen2cor/ "
    f"(it provides {EXECUTABLE}) and put it on PATH, set {ENV_VAR}=/path/to/{EXECUTABLE}, "
    "or pass --sen2cor; or give rsprep the L2A products instead"
)


class Sen2corError(RsprepError, RuntimeError):
    """sen2cor is missing or failed."""


def find_sen2cor(executable: str | None = None) -> str:
    """The ``L2A_Process`` to run: ``executable``, else ``$RSPREP_SEN2COR``, else PATH.

    Raises:
        Sen2corError: none found, with install guidance.
    """
    candidate = executable or os.environ.get(ENV_VAR) or EXECUTABLE
    found = shutil.which(candidate)
    if found is None:
        raise Sen2corError(f"L1C input needs sen2cor, but {candidate!r} was not found; {INSTALL_HINT}")
    return found


def prepare_l1c(safe: Path) -> list[Path]:
    """Create the empty ``DATASTRIP/*/QI_DATA`` and ``GRANULE/*/AUX_DATA`` folders that sen2cor needs.

    Downloads sometimes lack them because zip archives drop empty folders. Returns what was created.
    """
    created = []
    for parent, sub in (("DATASTRIP", "QI_DATA"), ("GRANULE", "AUX_DATA")):
        base = safe / parent
        if not base.is_dir():
            continue
        for d in sorted(base.iterdir()):
            if d.is_dir() and not (d / sub).exists():
                (d / sub).mkdir()
                created.append(d / sub)
    return created


def l1c_to_l2a(product, *, work: Path, executable: str | None = None) -> Path:
    """Run sen2cor on an L1C product and return the L2A SAFE folder it wrote.

    The L2A product goes to ``work/.sen2cor/<L1C product URI>/`` and is reused on a re-run. Zipped L1C
    input is extracted there first.

    Raises:
        Sen2corError: sen2cor missing, failing, or writing no matching L2A product.
    """
    from rsprep.inputs.safe import read_product

    exe = find_sen2cor(executable)
    base = Path(work) / ".sen2cor" / product.product_uri.removesuffix(".SAFE")
    out_dir = base / "L2A"
    existing = _find_l2a(out_dir, product)
    if existing is not None:
        log.info("reusing sen2cor output %s", existing)
        return existing
    if product.path.is_file():  # a zip: sen2cor needs a folder
        extract = base / "L1C"
        shutil.rmtree(extract, ignore_errors=True)
        try:
            with zipfile.ZipFile(product.path) as zf:
                zf.extractall(extract)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InvalidProductError(f"{product.path}: cannot extract for sen2cor ({exc})") from exc
        safe = extract / product.safe_root if product.safe_root else extract
    else:
        safe = product.path / product.safe_root if product.safe_root else product.path
    for d in prepare_l1c(safe):
        log.info("created empty folder %s for sen2cor", d)
    with building(out_dir) as tmp_out:  # only a finished, matching L2A product replaces out_dir
        _run(exe, safe, tmp_out, product)
    found = _find_l2a(out_dir, product)
    read_product(found, check_files=False)
    return found


def _find_l2a(folder: Path, l1c) -> Path | None:
    if not folder.is_dir():
        return None
    stamp = f"{l1c.datatake_time:%Y%m%dT%H%M%S}"
    hits = sorted(
        p for p in folder.glob("*MSIL2A*.SAFE") if p.is_dir() and stamp in p.name and l1c.tile_id in p.name
    )
    return hits[-1] if hits else None


def _run(exe: str, safe: Path, tmp_out: Path, product) -> None:
    """Run sen2cor on ``safe`` into ``tmp_out`` and check that it wrote the expected L2A product."""
    cmd = [exe, "--output_dir", str(tmp_out), str(safe)]
    log.info("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise Sen2corError(f"cannot run {exe} ({exc}); {INSTALL_HINT}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise Sen2corError(f"{exe} failed on {safe} (exit {proc.returncode}): {tail}")
    if _find_l2a(tmp_out, product) is None:
        raise Sen2corError(
            f"{exe} finished on {safe} but wrote no L2A product for tile {product.tile_id} "
            f"and datatake {product.datatake_time:%Y%m%dT%H%M%S} into its output folder"
        )

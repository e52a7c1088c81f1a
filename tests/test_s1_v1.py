"""``rsprep s1 --s1-v1``: BigEarthNet v1.0's real S1 patches as the S1 source of S2 patches on their grid.

The six real v1 S1 patches of ``../shared/data/ben-v1-patches`` lie in four tiles and three UTM zones.
Each test store is a real work store (manifest, ``patches.parquet``, ``s2.zarr`` written with the
work store's own functions) on the real reBEN tile grid of its tile, whose S2 patches hold the real v1
S2 bands of the same place; the alignment (patch_id → s1_name) comes from the v1 metadata files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
from typer.testing import CliRunner

from rsprep.cli.main import app
from rsprep.core.grid import TileGrid, parse_product_uri, patches_per_side
from rsprep.inputs.s1 import BadS1Error
from rsprep.inputs.s1_v1 import S1GridError
from rsprep.stages.patch import PatchOptions
from rsprep.stages.s1_pair import INVALID_S2, PAIRED
from rsprep.stages.s1_v1 import MISSING, NO_V1, S1V1Options, s1_v1_store, s1_v1_work
from rsprep.store.atomic import write_json_atomic
from rsprep.store.chunks import group_inventory
from rsprep.store.workstore import (
    INVENTORY,
    MANIFEST,
    PATCH_TABLE,
    S2_ARRAYS,
    STORE_FORMAT,
    STORE_VERSION,
    TileStore,
    consolidate,
    create_patch_array,
    stage_record,
)

BANDS = ("B02", "B03", "B04", "B08")  # the 10 m bands, enough for a valid S2 patch


@pytest.fixture(scope="module")
def v1(shared_data) -> Path:
    return shared_data("ben-v1-patches")


def _v1_patches(v1: Path) -> list[dict]:
    """Each real v1 S1 patch: its name, georeference, S2 partner and the L2A product of the S2 patch."""
    out = []
    for d in sorted((v1 / "BigEarthNet-S1-Example").iterdir()):
        meta = json.loads((d / f"{d.name}_labels_metadata.json").read_text())
        s2 = meta["corresponding_s2_patch"]
        s2_meta = json.loads((v1 / "BigEarthNet-S2-Example" / s2 / f"{s2}_labels_metadata.json").read_text())
        with rasterio.open(d / f"{d.name}_VV.tif") as ds:
            epsg, left, top = ds.crs.to_epsg(), ds.bounds.left, ds.bounds.top
        x, y = (int(v) for v in d.name.split("_")[-2:])
        # the L2A of the v1 patch's L1C (v1 names keep a datatake without its leading 0, or a wrong one)
        when = datetime.strptime(s2_meta["acquisition_date"], "%Y-%m-%d %H:%M:%S")
        m = re.match(r"(S2[AB])_MSIL1C_\w+?_N\d{4}_(R\d{3}_T\w{5})_(\d{8}T\d{6})", s2_meta["tile_source"])
        l2a = f"{m[1]}_MSIL2A_{when:%Y%m%dT%H%M%S}_N9999_{m[2]}_{m[3]}.SAFE"
        out.append(dict(s1=d.name, s2=s2, l2a=l2a, epsg=epsg, left=left, top=top, x=x, y=y))
    return out


def _write_store(root: Path, l2a: str, epsg: int, ulx: float, uly: float, patches: dict) -> TileStore:
    """A work store of product ``l2a`` on its tile grid, with ``patches`` ((x, y) → band → array) valid."""
    name = parse_product_uri(l2a)
    prefix = name.patch_prefix
    n = patches_per_side(109_800)
    grid = TileGrid(f"T{name.tile}", epsg, ulx, uly, 109_800.0, 1200, n, prefix)
    path = root / prefix
    path.mkdir(parents=True)
    import zarr

    group = zarr.open_group(path / S2_ARRAYS, mode="w", zarr_format=3)
    rows = {grid.index(x, y): bands for (x, y), bands in patches.items()}
    for band in BANDS:
        arr = create_patch_array(group, band, shape=(grid.count, 120, 120), dtype="uint16", chunk_patches=n)
        for i, bands in rows.items():
            arr[i] = bands[band]
    consolidate(path / S2_ARRAYS)
    idx = np.arange(grid.count)
    valid = np.isin(idx, list(rows))
    sensing = datetime.strptime(name.datatake, "%Y%m%dT%H%M%S")
    pq.write_table(
        pa.table(
            {
                "index": pa.array(idx, pa.int32()),
                "patch_id": [grid.patch_id(*grid.xy(int(i))) for i in idx],
                "x": pa.array(idx % n, pa.int16()),
                "y": pa.array(idx // n, pa.int16()),
                "valid": valid,
                "sensing_time": pa.array([sensing] * grid.count, pa.timestamp("us", tz="UTC")),
            }
        ),
        path / PATCH_TABLE,
    )
    opts = PatchOptions(bands=BANDS)
    manifest = {
        "format": STORE_FORMAT,
        "version": STORE_VERSION,
        "grid": grid.to_dict(),
        "product": {
            "product_uri": prefix,
            "sensing_time": f"{sensing:%Y-%m-%dT%H:%M:%S}Z",
            "quality_passed": True,
        },
        "stages": {
            "patch": stage_record(
                opts.to_dict(), f"synthetic {prefix}", outputs=[S2_ARRAYS, PATCH_TABLE], valid=len(rows)
            )
        },
        INVENTORY: {S2_ARRAYS: group_inventory(path / S2_ARRAYS)},
    }
    write_json_atomic(path / MANIFEST, manifest)
    return TileStore.open(path)


def _s2_bands(v1: Path, s2: str) -> dict[str, np.ndarray]:
    folder = v1 / "BigEarthNet-S2-Example" / s2
    out = {}
    for b in BANDS:
        with rasterio.open(folder / f"{s2}_{b}.tif") as ds:
            out[b] = np.maximum(ds.read(1), 1).astype(np.uint16)  # no 0: a valid patch
    return out


@pytest.fixture
def work(v1, tmp_path) -> tuple[Path, dict[str, str], list[dict]]:
    """One store per S2 product (five), each with its v1 patch and the patch east of it valid."""
    patches = _v1_patches(v1)
    by_product: dict[str, list[dict]] = {}
    for p in patches:
        by_product.setdefault(p["l2a"], []).append(p)
    work, names = tmp_path / "work", {}
    for l2a, group in by_product.items():
        first = group[0]
        ulx, uly = first["left"] - 1200 * first["x"], first["top"] + 1200 * first["y"]
        cells = {}
        for p in group:
            bands = _s2_bands(v1, p["s2"])
            cells[(p["x"], p["y"])] = bands
            cells[(p["x"] + 1, p["y"])] = {b: a[::-1].copy() for b, a in bands.items()}  # no v1 partner
        store = _write_store(work, l2a, first["epsg"], ulx, uly, cells)
        for p in group:
            p["store"], p["patch_id"] = store.path, store.grid.patch_id(p["x"], p["y"])
            names[p["patch_id"]] = p["s1"]
    return work, names, patches


def _v1_dir(v1: Path) -> Path:
    return v1 / "BigEarthNet-S1-Example"


def test_v1_patches_are_the_s1_source(v1, work):
    root, names, patches = work
    results = s1_v1_work(root, _v1_dir(v1), names=names)
    assert [r.status for r in results] == ["done"] * 5
    assert sum(r.paired for r in results) == 6 and sum(r.patches for r in results) == 12
    for p in patches:
        store = TileStore.open(p["store"])
        t = store.table("s1.parquet").to_pandas().set_index("patch_id")
        row = t.loc[p["patch_id"]]
        assert (row.s1_status, row.s1_name) == (PAIRED, p["s1"])
        assert row.s1_product == p["s1"].rsplit("_", 3)[0]
        east = t.loc[store.grid.patch_id(p["x"] + 1, p["y"])]
        assert east.s1_status == NO_V1 and pd.isna(east.s1_name) and east.s1_index == -1
        assert set(t.s1_status) == {PAIRED, NO_V1, INVALID_S2}
        s1 = store.zarr("s1.zarr")
        for pol in ("VV", "VH"):
            with rasterio.open(_v1_dir(v1) / p["s1"] / f"{p['s1']}_{pol}.tif") as ds:
                want = ds.read(1)
            got = s1[pol][int(row.s1_index)]
            assert got.dtype == np.float32 and got.tobytes() == want.tobytes()  # the v1 values, bit for bit
            assert s1[pol].attrs["resampling"] == "none" and s1[pol].attrs["units"] == "dB"
        rec = store.stage("s1")
        assert rec["parameters"] == {"source": "v1", "polarisations": ["VV", "VH"]}
        assert rec["excluded"] == [] and rec["v1"] == str(_v1_dir(v1))
    first = next(p for p in patches if "_33UUP_" in p["s1"])
    row = (
        TileStore.open(first["store"])
        .table("s1.parquet")
        .to_pandas()
        .set_index("patch_id")
        .loc[first["patch_id"]]
    )
    assert row.s1_delta_hours == pytest.approx(6 + 40 / 60 + 12 / 3600, abs=1e-3)  # 16:50:43 − 10:10:31
    # up to date: skipped; a changed mapping or v1 file redoes only the stores concerned
    assert {r.status for r in s1_v1_work(root, _v1_dir(v1), names=names)} == {"skipped"}
    changed = dict(names)
    changed[first["patch_id"]] = None
    again = {Path(r.store).name: r.status for r in s1_v1_work(root, _v1_dir(v1), names=changed)}
    assert again.pop(first["store"].name) == "done" and set(again.values()) == {"skipped"}
    t = TileStore.open(first["store"]).table("s1.parquet").to_pandas().set_index("patch_id")
    assert t.loc[first["patch_id"]].s1_status == NO_V1


def test_touched_v1_file_redoes_its_store(v1, work, tmp_path):
    root, names, patches = work
    v1_copy = tmp_path / "v1s1"
    shutil.copytree(_v1_dir(v1), v1_copy)
    s1_v1_work(root, v1_copy, names=names)
    p = patches[0]
    f = v1_copy / p["s1"] / f"{p['s1']}_VH.tif"
    os.utime(f, (f.stat().st_atime + 10, f.stat().st_mtime + 10))
    status = {Path(r.store).name: r.status for r in s1_v1_work(root, v1_copy, names=names)}
    assert status.pop(p["store"].name) == "done" and set(status.values()) == {"skipped"}


def test_v1_patch_on_another_grid_is_refused(v1, work, tmp_path):
    root, names, patches = work
    p = next(q for q in patches if "_33UUP_" in q["s1"])
    v1_copy = tmp_path / "v1s1"
    shutil.copytree(_v1_dir(v1), v1_copy)
    f = v1_copy / p["s1"] / f"{p['s1']}_VV.tif"
    with rasterio.open(f, "r+") as ds:
        ds.transform = ds.transform * ds.transform.translation(1, 0)  # one 10 m pixel east
    store = TileStore.open(p["store"])
    with pytest.raises(S1GridError) as err:
        s1_v1_store(store, v1_copy, names=names)
    msg = str(err.value)
    assert str(f) in msg and p["patch_id"] in msg
    assert "EPSG:32633, bounds (404410.00, 5341200.00, 405610.00, 5342400.00)" in msg  # the file
    assert "EPSG:32633, bounds (404400.00, 5341200.00, 405600.00, 5342400.00)" in msg  # the S2 patch
    assert not (store.path / "s1.parquet").exists()  # nothing written
    # a v1 patch of another UTM zone: both CRSs named; --skip-bad-s1 does not hide it
    other = next(q for q in patches if "_29UPU_" in q["s1"])
    wrong = {**names, p["patch_id"]: other["s1"]}
    with pytest.raises(S1GridError, match=r"EPSG:32629, bounds .* the S2 patch on EPSG:32633, bounds"):
        s1_v1_store(store, _v1_dir(v1), S1V1Options(skip_bad=True), names=wrong)
    results = s1_v1_work(root, _v1_dir(v1), names=wrong)
    failed = [r for r in results if r.status == "failed"]
    assert [Path(r.target).name for r in failed] == [store.name] and "does not lie on the grid" in failed[
        0
    ].error


def test_missing_v1_patch_fails_the_store_or_is_skipped(v1, work, tmp_path):
    _, names, patches = work
    p = next(q for q in patches if "_33UUP_" in q["s1"])
    v1_copy = tmp_path / "v1s1"
    shutil.copytree(_v1_dir(v1), v1_copy)
    shutil.rmtree(v1_copy / p["s1"])
    store = TileStore.open(p["store"])
    missing = v1_copy / p["s1"] / f"{p['s1']}_VV.tif"
    with pytest.raises(BadS1Error) as err:
        s1_v1_store(store, v1_copy, names=names)
    assert f"BigEarthNet v1.0 S1 file {missing} (for S2 patch {p['patch_id']}" in str(err.value)
    assert "--skip-bad-s1" in str(err.value) and not (store.path / "s1.parquet").exists()
    r = s1_v1_store(store, v1_copy, S1V1Options(skip_bad=True), names=names)
    assert r.status == "done" and r.paired == 0 and str(missing) in r.warnings[0]
    t = store.table("s1.parquet").to_pandas().set_index("patch_id")
    assert t.loc[p["patch_id"]].s1_status == MISSING and pd.isna(t.loc[p["patch_id"]].s1_name)
    assert TileStore.open(store.path).stage("s1")["excluded"]
    # without --skip-bad-s1 the store is not current: the missing patch fails it again
    with pytest.raises(BadS1Error):
        s1_v1_store(TileStore.open(store.path), v1_copy, names=names)
    # a truncated file is unreadable, named alike
    shutil.copytree(_v1_dir(v1) / p["s1"], v1_copy / p["s1"])
    vh = v1_copy / p["s1"] / f"{p['s1']}_VH.tif"
    vh.write_bytes(vh.read_bytes()[:20_000])
    with pytest.raises(BadS1Error, match=rf"{vh}.*unreadable"):
        s1_v1_store(TileStore.open(store.path), v1_copy, names=names, force=True)


def test_only_vv_and_vh(v1, work):
    root, names, _ = work
    with pytest.raises(Exception, match="hold VV and VH only"):
        s1_v1_work(root, _v1_dir(v1), S1V1Options(polarisations=("HH",)), names=names)
    results = s1_v1_work(root, _v1_dir(v1), S1V1Options(polarisations=("VV",)), names=names)
    store = TileStore.open(results[0].store)
    assert list(store.zarr("s1.zarr").array_keys()) == ["VV"]


def test_cli_s1_v1(v1, work, tmp_path):
    root, _, patches = work
    runner = CliRunner()
    both = runner.invoke(app, ["s1", "--s1", str(tmp_path), "--s1-v1", str(_v1_dir(v1)), "--work", str(root)])
    assert both.exit_code == 2 and "exactly one S1 source" in both.output
    neither = runner.invoke(app, ["s1", "--work", str(root)])
    assert neither.exit_code == 2 and "--s1-v1" in neither.output
    days = runner.invoke(app, ["s1", "--s1-v1", str(_v1_dir(v1)), "--max-days", "3", "--work", str(root)])
    assert days.exit_code == 2 and "--max-days" in days.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = runner.invoke(app, ["s1", "--s1-v1", str(empty), "--work", str(root)])
    assert r.exit_code == 1 and "holds no BigEarthNet v1.0 S1 patch" in r.output
    # names from BigEarthNet v1.0's tables (the default source), when the reben extra is there
    pytest.importorskip("rsprep.inputs.v1_align")
    args = ["s1", "--s1-v1", str(_v1_dir(v1)), "--work", str(root), "--workers", "1"]
    r = runner.invoke(app, args)
    # v1 has a partner for each patch east of a sample patch too, but the sample folder lacks it
    assert r.exit_code == 1 and "5 of 5 store(s) failed" in r.output
    assert "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_88_48_VV.tif (for S2 patch " in r.output
    r = runner.invoke(app, [*args, "--skip-bad-s1"])
    assert r.exit_code == 0, r.output
    assert "warning" in r.output and "1 of 2 valid patches paired" in r.output
    for p in patches:
        t = TileStore.open(p["store"]).table("s1.parquet").to_pandas().set_index("patch_id")
        assert t.loc[p["patch_id"]].s1_name == p["s1"]
        assert t.loc[TileStore.open(p["store"]).grid.patch_id(p["x"] + 1, p["y"])].s1_status == MISSING


def test_build_runs_and_plans_the_v1_stage(v1, work):
    """The build's per-product chain runs the v1 stage for a V1Source, and its plan asks the same rule."""
    from rsprep.build import plan as build_plan
    from rsprep.build import tasks
    from rsprep.build.recipe import load_recipe
    from rsprep.stages.s1 import S1Options
    from rsprep.stages.s1_v1 import V1Source

    root, _, patches = work
    recipe = load_recipe("reben", ())
    source = V1Source.open(_v1_dir(v1))
    plan = build_plan.Plan([], root, root.parent / "dataset", ["patch", "s1", "reference"], discovery=source)
    p = next(q for q in patches if "_33UUP_" in q["s1"])
    store = TileStore.open(p["store"])
    assert build_plan._store_status(recipe, "s1", store, plan) == (build_plan.TODO, "no s1 yet")
    results = []
    options = {"stack": None, "s1": S1Options(skip_bad=True), "reference": None}
    tasks._store_stages(str(store.path), options, source, None, lambda r: results.append(r) or False)
    assert results[0].stage == "s1" and results[0].status == "done" and results[0].paired == 1
    assert TileStore.open(store.path).stage("s1")["parameters"]["source"] == "v1"
    # the store's east patch has a v1 partner (the default names) missing from the sample folder
    assert results[0].warnings and "33UUP_88_48" in results[0].warnings[0]
    reben_skip = load_recipe("reben", ["s1.skip_bad=true"])
    assert build_plan._store_status(reben_skip, "s1", TileStore.open(store.path), plan) == (
        build_plan.CURRENT,
        "",
    )
    # without skip_bad the exclusion is not kept silently
    status, _ = build_plan._store_status(recipe, "s1", TileStore.open(store.path), plan)
    assert status == build_plan.TODO


def test_reben_recipe_takes_s1_from_v1(tmp_path):
    from rsprep.build.recipe import RecipeError, load_recipe

    assert load_recipe("reben", ()).s1.source == "v1" and load_recipe("demo", ()).s1.source == "scenes"
    with pytest.raises(RecipeError, match="VV and VH only"):
        load_recipe("demo", ["s1.source=v1", "s1.polarisations=[HH]"])
    runner = CliRunner()
    base = [
        "build",
        "reben",
        "--s2",
        str(tmp_path),
        "--clc",
        str(tmp_path / "clc.gpkg"),
        "--out",
        str(tmp_path),
    ]
    r = runner.invoke(app, [*base, "--s1", str(tmp_path)])
    assert r.exit_code == 2 and "pass --s1-v1 DIR" in r.output
    r = runner.invoke(app, [*base, "--s1", str(tmp_path), "--s1-v1", str(tmp_path)])
    assert r.exit_code == 2 and "give one S1 source" in r.output


def test_a_v1_folder_is_fingerprinted_by_its_listing(v1, tmp_path):
    """A BigEarthNet-S1-v1.0 folder (1.8 million files at full size) is fingerprinted by its top-level
    entries, not file by file; a new patch folder changes the digest."""
    from rsprep.build.run_record import input_fingerprints

    folder = tmp_path / "s1v1"
    shutil.copytree(_v1_dir(v1), folder)
    first = input_fingerprints([], folder, None, None, None, s1_listing=True)["s1"]
    assert first["scope"] == "top-level entries"
    assert first["files"] == len(list(folder.iterdir()))
    (folder / "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_99_99").mkdir()
    again = input_fingerprints([], folder, None, None, None, s1_listing=True)["s1"]
    assert again["digest"] != first["digest"] and again["files"] == first["files"] + 1
    full = input_fingerprints([], folder, None, None, None)["s1"]
    assert "scope" not in full and full["files"] > again["files"]  # every file, one level down

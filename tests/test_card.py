"""``rsprep card``: README.md with Hugging Face front matter whose numbers are the parquet files' own,
deterministic figures of the documented size, and the official folders without build.json."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from rsprep.card import CardOptions, make_card
from rsprep.card import figures as fig
from rsprep.card.make import FIGURES, MARKER, MAX_PREVIEW, README
from rsprep.core.bands import SPECTRAL_BANDS
from rsprep.core.grid import season
from rsprep.core.nomenclature import BEN19
from rsprep.errors import InputNotFoundError, InvalidParameterError, OutputExistsError
from rsprep.store import dataset as ds
from rsprep.store.workstore import find_stores

FLAG_FREE = ds.METADATA


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text[4 : text.index("\n---\n", 4)])


def md_table(text: str, heading: str, nth: int = 0) -> list[list[str]]:
    """The body rows of the ``nth`` Markdown table after ``heading`` (cells stripped)."""
    lines = text.split("\n")
    i = lines.index(heading)
    starts = [
        k for k in range(i + 1, len(lines)) if lines[k].startswith("|") and not lines[k - 1].startswith("|")
    ]
    rows = []
    for line in lines[starts[nth] + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line[2:-2].split(" | ")])
    return rows


def num(cell: str) -> int:
    return int(cell.replace(",", ""))


def tables(root: Path) -> list[dict]:
    """Every row of both metadata files, as the test reads them (pyarrow, no rsprep)."""
    rows = []
    for name in (ds.METADATA, ds.FLAGGED):
        for r in pq.read_table(root / name).to_pylist():
            rows.append({**r, "file": name})
    return rows


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def carded(full_dataset, tmp_path_factory):
    """A copy of the full demo dataset with its card, and what make_card returned."""
    root = Path(shutil.copytree(full_dataset, tmp_path_factory.mktemp("card") / "ds"))
    calls = []
    result = make_card(root, progress=lambda done, total: calls.append((done, total)))
    return root, result, (root / README).read_text(encoding="utf-8"), calls


# --------------------------------------------------------------------------------------------
# front matter and numbers
# --------------------------------------------------------------------------------------------
def test_front_matter_parses_and_holds_the_hugging_face_keys(carded):
    root, _, text, _ = carded
    meta = front_matter(text)
    assert meta["license"] == "cdla-permissive-1.0"
    assert meta["pretty_name"] == "reBEN (BigEarthNet v2.0), built with rsprep"
    assert meta["task_categories"] == ["image-classification"]
    assert {"remote-sensing", "sentinel-2", "sentinel-1", "multi-label", "bigearthnet"} <= set(meta["tags"])
    assert meta["size_categories"] == ["n<1K"]  # 31 patches
    assert meta["configs"] == [
        {"config_name": "default", "data_files": ds.METADATA},
        {"config_name": "snow_cloud_or_shadow", "data_files": ds.FLAGGED},
    ]
    assert all((root / c["data_files"]).is_file() for c in meta["configs"])
    assert MARKER in text


def test_split_counts_equal_the_parquet_files(carded):
    root, result, text, _ = carded
    rows = tables(root)
    assert result.patches == len(rows) == 31
    got = {r[0]: (num(r[1]), num(r[2]), num(r[3])) for r in md_table(text, "## Splits")}
    want = {}
    for split in {r["split"] for r in rows}:
        of = [r for r in rows if r["split"] == split]
        m = sum(r["file"] == FLAG_FREE for r in of)
        want[split] = (m, len(of) - m, len(of))
    assert got == want
    assert list(got) == ["train", "validation", "test"]


def test_class_counts_in_both_orders_equal_the_parquet_files(carded):
    root, _, text, _ = carded
    rows = tables(root)
    paper = md_table(text, "## Classes", 0)
    alpha = md_table(text, "## Classes", 1)
    assert [r[1] for r in paper] == list(BEN19.classes)
    assert [num(r[0]) for r in paper] == list(range(19))
    assert [r[1] for r in alpha] == sorted(BEN19.classes)
    splits = ["train", "validation", "test"]
    for i, name in enumerate(BEN19.classes):
        per_split = [sum(name in r["labels"] and r["split"] == s for r in rows) for s in splits]
        assert [num(c) for c in paper[i][3:6]] == per_split, name
        assert num(paper[i][6]) == sum(name in r["labels"] for r in rows)
        assert paper[i][2] == ", ".join(map(str, BEN19.codes[i]))
    for j, r in enumerate(alpha):
        assert (num(r[0]), num(r[2])) == (j, BEN19.classes.index(r[1]))
        assert num(r[3]) == sum(r[1] in row["labels"] for row in rows)


def test_country_season_and_cardinality_equal_the_parquet_files(carded):
    root, _, text, _ = carded
    rows = tables(root)
    countries = {r[0]: num(r[1]) for r in md_table(text, "## Countries")}
    assert countries == dict(Counter(r["country"] for r in rows))
    side = {r["patch_id"]: r for r in pq.read_table(root / ds.SIDECAR).to_pylist()}
    seasons = {r[0]: num(r[1]) for r in md_table(text, "## Seasons")}
    assert seasons == dict(Counter(side[r["patch_id"]]["season"] for r in rows))
    assert seasons == dict(Counter(season(side[r["patch_id"]]["sensing_time"]) for r in rows))
    lengths = np.array([len(r["labels"]) for r in rows])
    assert f"Mean {lengths.mean():.3f}, min {lengths.min()}, max {lengths.max()}." in text
    hist = {num(r[0]): num(r[1]) for r in md_table(text, "## Labels per patch")}
    assert hist == dict(Counter(lengths.tolist()))


def test_label_rule_band_orders_and_provenance(carded, full_dataset):
    root, _, text, _ = carded
    assert "less than 0.25 of its pixels" in text
    assert "These parameters come from the work store's reference stage." in text
    bands = md_table(text, "## Bands")
    assert [r[0] for r in bands] == [*SPECTRAL_BANDS, "VV", "VH", "reference map"]
    assert {r[0]: num(r[1]) for r in bands}["B09"] == 60
    from rsprep.formats.readers import LmdbReader

    first = pq.read_table(root / ds.METADATA).column("patch_id")[0].as_py()
    first = min(first, pq.read_table(root / ds.FLAGGED).column("patch_id")[0].as_py())
    lmdb = md_table(text, "## Band order of each output", 0)
    assert lmdb[0][1] == f"`{first}`"
    assert lmdb[0][2] == ", ".join(sorted(LmdbReader(root / "lmdb").get(first)))
    zarr_attrs = json.loads((root / "zarr/dataset.zarr/zarr.json").read_text())
    stacked = zarr_attrs["consolidated_metadata"]["metadata"]["s2_stacked"]["attributes"]["bands"]
    assert f"bilinear to 10 m: {', '.join(stacked)}" in text
    assert ", ".join(f"`<key>_{b}.tif`" for b in SPECTRAL_BANDS) in text
    build = json.loads((root / ds.BUILD).read_text())
    for stage in build["stages"]:
        assert f"### {stage}\n" in text
    assert "seconds" not in text
    work = ds.recorded_path(ds.work_store(root), root)  # shown as build.json records it: relative
    products = md_table(text, f"### Products of the work store `{work}`")
    want = {
        f"`{s.name}`": "passed"
        if s.product["quality_passed"]
        else "**failed** " + ", ".join(s.product["failed_quality_checks"])
        for s in find_stores(work)
    }
    assert {r[0]: r[1] for r in products} == want
    assert "**failed** GEOMETRIC_QUALITY" in want.values()  # the demo's last product


def test_loading_and_statistics_sections(carded):
    _, _, text, _ = carded
    assert 'BigEarthNetV2(root="ds", split="train", bands="all")' in text
    assert '"images_lmdb": "ds/lmdb"' in text and "BENv2DataSet(files" in text
    assert 'ZarrReader(f"{root}/zarr/dataset.zarr")' in text
    assert "No `stats.json` yet: run `rsprep stats DATASET`" in text


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def test_figures_are_pngs_of_the_documented_size(carded):
    root, result, text, calls = carded
    assert [p.name for p in result.figures] == [f"{n}.png" for n in fig.FIGURE_NAMES]
    for name in fig.FIGURE_NAMES:
        path = root / FIGURES / f"{name}.png"
        assert path.stat().st_size > 1000
        patches = min(16, result.patches) if name == "preview" else 0
        assert png_size(path) == fig.pixel_size(name, patches), name
        assert f"]({FIGURES}/{name}.png)" in text
    assert fig.pixel_size("preview", 16) == (1000, 660)
    assert result.notes == {"preview": "read from the Zarr store"}
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_two_runs_give_identical_bytes(carded):
    root, result, _, _ = carded
    before = {p: p.read_bytes() for p in result.written}
    again = make_card(root)  # our own README: no --overwrite needed
    assert again.written == result.written
    assert {p: p.read_bytes() for p in again.written} == before
    # and in a fresh process (its own matplotlib state and font cache)
    cmd = [sys.executable, "-m", "rsprep.cli.main", "-q", "card", str(root)]
    assert subprocess.run(cmd, capture_output=True, text=True, check=False).returncode == 0
    assert {p: p.read_bytes() for p in result.written} == before


def test_seed_and_preview_choose_the_grid(carded, tmp_path):
    root = Path(shutil.copytree(carded[0], tmp_path / "ds"))
    make_card(root, CardOptions(preview=5, seed=3))
    assert png_size(root / FIGURES / "preview.png") == fig.pixel_size("preview", 5) == (1000, 380)
    assert (root / FIGURES / "preview.png").read_bytes() != (carded[0] / FIGURES / "preview.png").read_bytes()
    result = make_card(root, CardOptions(preview=0))
    assert not (root / FIGURES / "preview.png").exists()
    assert (
        "RGB (B04, B03, B02) and reference map in the CLC colours: not drawn, --preview 0.*"
        in (root / README).read_text()
    )
    assert result.notes["preview"] == "--preview 0"


def test_preview_is_the_same_from_every_output(carded, tmp_path):
    root = Path(shutil.copytree(carded[0], tmp_path / "ds"))
    want = (carded[0] / FIGURES / "preview.png").read_bytes()
    shutil.rmtree(root / "zarr")
    assert make_card(root).notes["preview"] == "read from the LMDB"
    assert (root / FIGURES / "preview.png").read_bytes() == want
    shutil.rmtree(root / "lmdb")
    assert make_card(root).notes["preview"] == "read from the GeoTIFF layout"
    assert (root / FIGURES / "preview.png").read_bytes() == want
    assert "TorchGeo reads the GeoTIFF layout" in (root / README).read_text()


def test_country_borders_are_drawn(carded, archive, manifest, tmp_path):
    root = Path(shutil.copytree(carded[0], tmp_path / "ds"))
    make_card(root, CardOptions(countries=archive / manifest["countries"]["path"]))
    with_borders = (root / FIGURES / "footprints.png").read_bytes()
    assert with_borders != (carded[0] / FIGURES / "footprints.png").read_bytes()
    assert png_size(root / FIGURES / "footprints.png") == fig.pixel_size("footprints")


def test_colours_are_the_clc_legend():
    assert fig.CLC_COLOURS[111] == (230, 0, 77) and fig.CLC_COLOURS[523] == (230, 242, 255)
    assert set(fig.CLC_COLOURS) == {c for codes in BEN19.codes for c in codes} | {
        122,
        123,
        124,
        131,
        132,
        133,
        141,
        142,
        332,
        334,
        335,
        423,
        999,
    }
    rgb = fig.colour_map(np.array([[0, 311], [999, 7]], np.uint16))
    assert rgb.tolist() == [[[128, 128, 128], [128, 255, 0]], [[255, 255, 255], [255, 0, 255]]]


# --------------------------------------------------------------------------------------------
# folders without build.json, stats.json, overwriting
# --------------------------------------------------------------------------------------------
def test_official_sample_tables_without_build_json(official_copy):
    result = make_card(official_copy)
    text = (official_copy / README).read_text()
    rows = tables(official_copy)
    assert result.patches == len(rows) == 24
    assert front_matter(text)["pretty_name"] == "reBEN (BigEarthNet v2.0)"
    got = {r[0]: num(r[3]) for r in md_table(text, "## Splits")}
    assert got == dict(Counter(r["split"] for r in rows))
    seasons = {r[0]: num(r[1]) for r in md_table(text, "## Seasons")}
    months = [int(r["patch_id"].split("_")[2][4:6]) for r in rows]
    assert seasons == dict(Counter(("winter", "spring", "summer", "autumn")[(m % 12) // 3] for m in months))
    assert "0 patches from patches.parquet, 24 from the date in the patch id" in text
    assert "No `build.json`" in text and "the reBEN rule (no work store recorded)" in text
    assert "No pixel output in this folder yet" in text
    assert sorted(p.name for p in result.figures) == ["class_frequency.png", "cooccurrence.png"]
    assert "*Patch footprints by split: not drawn, needs the sidecar patches.parquet" in text
    assert "*SCL cloud, shadow and snow fractions: not drawn" in text


def test_official_geotiff_sample_without_tables(shared_data, tmp_path):
    root = Path(shutil.copytree(shared_data("reben-v2-patches"), tmp_path / "geo"))
    result = make_card(root)
    text = (root / README).read_text()
    assert result.patches == 2 and result.croissant is None
    assert "configs" not in front_matter(text)
    assert f"this folder holds no {ds.METADATA}" in text
    assert [p.name for p in result.figures] == ["preview.png"]
    assert png_size(root / FIGURES / "preview.png") == fig.pixel_size("preview", 2)
    assert "`<key>_B8A.tif`" in text and "TorchGeo reads the GeoTIFF layout" in text


def _stats_doc() -> dict:
    bands = {}
    for i, b in enumerate([*SPECTRAL_BANDS, "VV", "VH"]):
        s1 = b in ("VV", "VH")
        bands[b] = {"count": 14400 + i, "nodata": i, "mean": (-12.5 if s1 else 1000.25) + i,
                    "std": 3.125 + i, "min": -30.5 if s1 else 1, "max": 5.5 if s1 else 9000,
                    "p1": -25.0 if s1 else 50, "p99": 1.25 if s1 else 4000, "resolution_m": 10}  # fmt: skip
    native = [*SPECTRAL_BANDS, "VV", "VH"]
    loader = {
        "native": {"mean": [bands[b]["mean"] for b in native], "std": [bands[b]["std"] for b in native]}
    }
    return {"format": "rsprep-stats", "version": 1, "rsprep_version": "0.1.0", "split": "train",
            "patches": 14, "source": "lmdb", "sample": None,
            "order": {"s2": list(SPECTRAL_BANDS), "s1": ["VV", "VH"], "native": native},
            "bands": bands, "loader": loader}  # fmt: skip


def test_stats_table_when_stats_json_is_present(carded, tmp_path):
    root = Path(shutil.copytree(carded[0], tmp_path / "ds"))
    (root / "stats.json").write_text(json.dumps(_stats_doc()))
    make_card(root)
    text = (root / README).read_text()
    rows = md_table(text, "## Statistics")
    assert [r[0] for r in rows] == [*SPECTRAL_BANDS, "VV", "VH"]
    assert rows[0] == ["B01", "10", "1000.2500", "3.1250", "1", "9000", "50", "4000", "0"]
    assert rows[-1] == ["VH", "10", "0.5000", "16.1250", "-30.5000", "5.5000", "-25", "1.2500", "13"]
    assert "split train, all of its 14 patches, read from lmdb" in text
    assert "native_mean = [1000.2500, 1001.2500," in text
    # a dataset without S1 pixels (no S1 input, keep_unpaired): S1 statistics are null
    doc = _stats_doc()
    doc["bands"]["VV"].update(count=0, mean=None, std=None, min=None, max=None, p1=None, p99=None)
    doc["loader"]["native"]["mean"][-2] = doc["loader"]["native"]["std"][-2] = None
    (root / "stats.json").write_text(json.dumps(doc))
    make_card(root)
    text = (root / README).read_text()
    assert md_table(text, "## Statistics")[-2] == ["VV", "10", *["None"] * 6, "12"]
    assert ", None, 0.5000]\nnative_std" in text and "# None: the band has no valid pixel" in text
    (root / "stats.json").write_text(json.dumps({"format": "something else"}))
    make_card(root)
    assert "stats.json is not a version-1 rsprep-stats file" in (root / README).read_text()


def test_refuses_a_readme_it_did_not_write(carded, tmp_path):
    root = Path(shutil.copytree(carded[0], tmp_path / "ds"))
    (root / README).write_text("# my own card\n")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        make_card(root)
    assert (root / README).read_text() == "# my own card\n"
    make_card(root, overwrite=True)
    assert MARKER in (root / README).read_text()
    assert not list(root.glob(".*.tmp-*")) and not list((root / FIGURES).glob(".*"))


def test_options_are_validated(tmp_path):
    with pytest.raises(InvalidParameterError, match="--preview"):
        CardOptions(preview=MAX_PREVIEW + 1).validate()
    with pytest.raises(InvalidParameterError, match="--seed"):
        CardOptions(seed=-1).validate()
    with pytest.raises(InputNotFoundError, match="--countries"):
        CardOptions(countries=tmp_path / "none.gpkg").validate()
    with pytest.raises(InputNotFoundError):
        make_card(tmp_path / "missing")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def test_cli_exit_codes(carded, tmp_path):
    from typer.testing import CliRunner

    from rsprep.cli.main import app

    root = Path(shutil.copytree(carded[0], tmp_path / "ds"))
    runner = CliRunner()
    r = runner.invoke(app, ["card", str(root), "--preview", "4", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert f"{root / README} (31 patches)" in r.output and "croissant.json" in r.output
    assert png_size(root / FIGURES / "preview.png") == fig.pixel_size("preview", 4)
    (root / README).write_text("mine\n")
    r = runner.invoke(app, ["card", str(root)])
    assert r.exit_code == 1 and "--overwrite" in r.output
    r = runner.invoke(app, ["-q", "card", str(root), "--overwrite"])
    assert r.exit_code == 0 and r.output == ""
    assert runner.invoke(app, ["card", str(root), "--preview", "65"]).exit_code == 2
    r = runner.invoke(app, ["card", str(tmp_path / "missing")])
    assert r.exit_code == 1 and "does not exist" in r.output

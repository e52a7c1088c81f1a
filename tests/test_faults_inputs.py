"""Integrity of inputs (issue 14, item 3): band files against manifest.safe, zip members against their CRC.

Each fault is made on a copy of a small synthetic product (real JPEG2000 files, a real manifest.safe):
a bit flipped in a JP2 (same size), a zipped product with a bad-CRC member, a band cut to half.
``inspect --strict`` and ``patch`` exit 1 naming the file and the work store is left as it was;
``--no-verify`` gives the behaviour from before the check.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rsprep.cli.main import app
from rsprep.inputs.safe import read_product
from rsprep.inputs.safe_archive import SafeArchive
from rsprep.inputs.safe_manifest import (
    IntegrityError,
    Verification,
    check_size,
    parse_manifest,
    product_inputs,
    read_manifest,
    verify_files,
)
from rsprep.synth.safe_writer import zip_product

runner = CliRunner()
BAND = "B03"


def _tree_digest(root: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file below ``root`` (and every folder, as '<dir>')."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def products(archive, manifest, tmp_path_factory) -> dict[str, Path]:
    """A folder and a zipped copy of the first product, and a second product (for the work store)."""
    base = tmp_path_factory.mktemp("faults-inputs")
    first = archive / manifest["products"][0]["path"]
    folder = base / "folder" / first.name
    shutil.copytree(first, folder)
    zipped_src = base / "zip" / first.name
    shutil.copytree(first, zipped_src)
    return {
        "folder": folder,
        "zip": zip_product(zipped_src),
        "other": archive / manifest["products"][1]["path"],
    }


@pytest.fixture(scope="module")
def work_template(products, tmp_path_factory) -> Path:
    """A work store holding the finished store of the other product."""
    out = tmp_path_factory.mktemp("faults-work") / "work"
    r = runner.invoke(app, ["patch", str(products["other"]), "--out", str(out), "--workers", "1"])
    assert r.exit_code == 0, r.output
    return out


def _band_rel(product: Path) -> str:
    return read_product(product, check_files=False).band_file(BAND).path


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _make_fault(kind: str, products: dict[str, Path], tmp_path: Path) -> tuple[Path, str]:
    """A corrupt copy of the product and the band file (relative to the SAFE root) that is corrupt."""
    if kind == "zip-crc":
        prod = tmp_path / products["zip"].name
        shutil.copyfile(products["zip"], prod)
        with zipfile.ZipFile(prod) as zf:
            info = next(i for i in zf.infolist() if i.filename.endswith(f"_{BAND}_10m.jp2"))
            assert info.compress_type == zipfile.ZIP_STORED
        with prod.open("rb") as f:  # local header: 30 bytes + name + extra, then the data
            f.seek(info.header_offset + 26)
            name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
        _flip_byte(prod, info.header_offset + 30 + name_len + extra_len + info.compress_size // 2)
        return prod, info.filename.split("/", 1)[1]
    prod = tmp_path / products["folder"].name
    shutil.copytree(products["folder"], prod)
    rel = _band_rel(prod)
    band = prod / rel
    size = band.stat().st_size
    if kind == "bit-flip":
        _flip_byte(band, size // 2)
        assert band.stat().st_size == size
    else:  # "half": header intact, code stream cut
        band.write_bytes(band.read_bytes()[: size // 2])
    return prod, rel


FAULTS = ("bit-flip", "zip-crc", "half")


@pytest.mark.parametrize("kind", FAULTS)
def test_inspect_strict_names_the_corrupt_file(kind, products, tmp_path):
    prod, rel = _make_fault(kind, products, tmp_path)
    before = hashlib.sha256(prod.read_bytes()).hexdigest() if prod.is_file() else _tree_digest(prod)
    r = runner.invoke(app, ["inspect", "--strict", str(prod)])
    assert r.exit_code == 1, r.output
    assert "Problems       1" in r.output and "CORRUPT" in r.output
    err = [x for x in r.output.splitlines() if x.startswith("rsprep: error:")]
    assert len(err) == 1 and rel in err[0] and str(prod) in err[0] and "download it again" in err[0]
    expected = {"bit-flip": "MD5", "zip-crc": "CRC", "half": "bytes"}[kind]
    assert expected in err[0]
    # Without --strict the problem is reported, the exit code is 0; --no-verify hides it (the old "ok").
    r = runner.invoke(app, ["inspect", str(prod)])
    assert r.exit_code == 0 and "Integrity      1 problem(s)" in r.output and rel in r.output
    r = runner.invoke(app, ["inspect", "--strict", "--no-verify", str(prod)])
    assert "Integrity" not in r.output
    assert r.exit_code == 0, r.output  # the band files open and have their declared size
    after = hashlib.sha256(prod.read_bytes()).hexdigest() if prod.is_file() else _tree_digest(prod)
    assert after == before


@pytest.mark.parametrize("kind", FAULTS)
def test_patch_refuses_the_corrupt_file_and_writes_no_store(kind, products, work_template, tmp_path):
    prod, rel = _make_fault(kind, products, tmp_path)
    work = tmp_path / "work"
    shutil.copytree(work_template, work)
    before = _tree_digest(work)
    r = runner.invoke(app, ["patch", str(prod), "--out", str(work), "--workers", "1"])
    assert r.exit_code == 1, r.output
    assert "1 of 1 product(s) failed" in r.output
    assert rel in r.output and str(prod) in r.output and "download it again" in r.output
    assert _tree_digest(work) == before  # no store, no temporary, the finished store untouched

    r = runner.invoke(app, ["patch", str(prod), "--out", str(work), "--workers", "1", "--no-verify"])
    if kind == "half":  # the decoder notices a cut code stream (the behaviour before the check)
        assert r.exit_code == 1 and "cannot be decoded" in r.output and BAND in r.output
        assert _tree_digest(work) == before
    else:  # wrong pixels go through, as before the check
        assert r.exit_code == 0, r.output
        assert set(_tree_digest(work)) > set(before)


def test_clean_products_pass(products, work_template, tmp_path):
    for prod in (products["folder"], products["zip"]):
        pr = read_product(prod)
        rels = product_inputs(pr, [b.path for b in pr.bands])
        checked = verify_files(pr, rels)
        assert checked.problems == [] and checked.files == len(rels) == 2 + 13
        r = runner.invoke(app, ["inspect", "--strict", str(prod)])
        assert r.exit_code == 0 and "Integrity      ok: 15 file(s) checked" in r.output
    work = tmp_path / "work"
    shutil.copytree(work_template, work)
    r = runner.invoke(app, ["patch", str(products["zip"]), "--out", str(work), "--workers", "1"])
    assert r.exit_code == 0, r.output


def test_missing_manifest_is_an_error_that_offers_no_verify(products, tmp_path):
    prod = tmp_path / products["folder"].name
    shutil.copytree(products["folder"], prod)
    (prod / "manifest.safe").unlink()
    work = tmp_path / "work"
    r = runner.invoke(app, ["patch", str(prod), "--out", str(work), "--workers", "1"])
    assert r.exit_code == 1 and "manifest.safe is missing" in r.output and "--no-verify" in r.output
    assert not work.exists()  # refused before anything is written
    r = runner.invoke(app, ["inspect", "--strict", str(prod)])
    assert r.exit_code == 1 and "manifest.safe is missing" in r.output


def test_verification_waits_for_the_hash_and_wins_over_a_decode_error(products, tmp_path):
    prod, rel = _make_fault("bit-flip", products, tmp_path)
    pr = read_product(prod)
    with pytest.raises(IntegrityError, match="MD5") as err, Verification(pr, product_inputs(pr, [rel])):
        raise ValueError("decoder failed")
    assert len(err.value.problems) == 1 and rel in err.value.problems[0]
    assert isinstance(err.value.__cause__, ValueError)


# -- real products ----------------------------------------------------------------------------------
def test_real_t29unu_manifest_parses_and_its_files_verify(t29unu):
    pr = read_product(t29unu)
    source = SafeArchive(pr.path)
    try:
        entries = read_manifest(source, pr.safe_root)
        b02 = pr.band_file("B02")
        assert check_size(source, pr.safe_root, b02.path, entries[b02.path]).endswith(
            f"missing (manifest.safe lists it with {entries[b02.path].size} bytes)"
        )
    finally:
        source.close()
    assert len(entries) == 86 and {e.algorithm for e in entries.values()} == {"SHA3-256"}
    present = [b.path for b in pr.bands if b.exists]
    assert len(present) == 3  # B01, B09 at 60 m and SCL at 20 m; the rest were removed upstream
    checked = verify_files(pr, product_inputs(pr, present))
    assert checked.files == 5 and checked.problems == []  # real SHA3-256 sums of real files


def test_real_t22hbd_downsampled_files_are_reported(t22hbd):
    pr = read_product(t22hbd)
    manifest = next(t22hbd.rglob("manifest.safe"))
    entries = parse_manifest(manifest.read_bytes(), str(manifest))
    assert entries["MTD_MSIL2A.xml"].algorithm == "MD5" and len(entries["MTD_MSIL2A.xml"].checksum) == 32
    checked = verify_files(pr, product_inputs(pr, [b.path for b in pr.bands]))
    assert len(checked.problems) == 13 and all("manifest.safe says" in p for p in checked.problems)

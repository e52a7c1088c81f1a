"""Placeholder replaced by its owner."""

from pathlib import Path


def run(view, rec, sampling) -> None:
    rec.skip("not written yet")


def write_checksums(dataset) -> tuple[Path, int]:
    raise NotImplementedError

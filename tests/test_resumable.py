"""The partial builds of the format writers (rsprep.formats.resumable): resume, discard, and the boot
binding of builds whose files are synced once at the end."""

from __future__ import annotations

import json

import pytest

from rsprep.formats.resumable import STATE, PartialBuild
from rsprep.store.atomic import boot_id, sync_filesystem


def _start(dest, plan, *, unsynced: bool, said: list[str]) -> PartialBuild:
    build = PartialBuild(dest, plan, unsynced=unsynced)
    build.start(exists=False, overwrite=False, say=said.append)
    return build


def test_resume_same_plan_and_discard_other(tmp_path):
    said: list[str] = []
    build = _start(tmp_path / "out", {"a": 1}, unsynced=False, said=said)
    build.log(0)
    build.log(2)
    again = _start(tmp_path / "out", {"a": 1}, unsynced=False, said=said)
    assert again.done == {0, 2} and again.resumed_tasks == 2
    other = _start(tmp_path / "out", {"a": 2}, unsynced=False, said=said)
    assert other.done == set() and "other inputs or options" in said[-1]


def test_unsynced_build_is_bound_to_this_boot(tmp_path):
    said: list[str] = []
    build = _start(tmp_path / "out", {"a": 1}, unsynced=True, said=said)
    state = json.loads((build.path / STATE).read_text())
    assert state["boot"] == (boot_id() or "unknown")
    build.log(0)
    assert _start(tmp_path / "out", {"a": 1}, unsynced=True, said=said).done == {0}
    # the same log, written in an earlier boot of the machine and never synced: not trusted
    state["boot"] = "00000000-another-boot"
    (build.path / STATE).write_text(json.dumps(state))
    fresh = _start(tmp_path / "out", {"a": 1}, unsynced=True, said=said)
    assert fresh.done == set() and "machine restarted" in said[-1]


def test_synced_build_survives_a_restart(tmp_path):
    said: list[str] = []
    build = _start(tmp_path / "out", {"a": 1}, unsynced=True, said=said)
    build.log(0)
    build.sync()
    state = json.loads((build.path / STATE).read_text())
    assert state["boot"] == "synced"
    resumed = _start(tmp_path / "out", {"a": 1}, unsynced=True, said=said)
    assert resumed.done == {0}
    # the resumed run writes unsynced again: bound to this boot until its own sync
    assert json.loads((build.path / STATE).read_text())["boot"] == (boot_id() or "unknown")


def test_sync_filesystem_names_a_missing_folder(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 4096)
    sync_filesystem(tmp_path)
    with pytest.raises(FileNotFoundError, match="gone"):
        sync_filesystem(tmp_path / "gone")

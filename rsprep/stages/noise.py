"""Label-noise variants for noise-robust learning research (docs/noise.md). Clean labels are never changed.

Modes (class-wise ones act on each class c with positives P_c and negatives N_c among the target rows):

- ``subtractive``: remove ``⌊rate·|P_c|⌋`` positives.
- ``additive``: add ``⌊rate·|P_c|⌋`` false positives, capped so that c's prevalence stays ≤ cap (0.95).
- ``mixed``: both, with ``--sub-rate`` and ``--add-rate``; removals come from the clean positives and
  additions from the clean negatives, so they never touch the same entry.
- ``uniform``: flip every (patch, class) entry with probability p (exact: ``⌊p·n⌋`` entries per class).
- ``sample``: in a fraction of the patches, flip a fraction of the classes.
- ``swap``: in a fraction of the patches, relabel every pixel of one present class of the reference map
  as another class (absent before), then derive the labels from the noisy map with the label rule.
- ``matrix``: per class P(1→0) and P(0→1) from a JSON or CSV file (additions capped like ``additive``).

``--sampling exact`` draws exact counts without replacement; ``bernoulli`` flips each entry independently
with the same expected rate. Rows are sorted by patch_id first and every class draws from its own stream
(seed, mode, class name), so results do not depend on the row order. ``--min-labels 1`` never removes
the last label of a patch (the shortfall is reported as ``limited``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep import __version__
from rsprep.core.nomenclature import BEN19, BEN43, Nomenclature
from rsprep.core.splits import SPLITS
from rsprep.errors import InvalidParameterError, OutputExistsError
from rsprep.store import dataset as ds
from rsprep.store.atomic import write_json_atomic

MODES = ("subtractive", "additive", "mixed", "uniform", "sample", "swap", "matrix")
SAMPLINGS = ("exact", "bernoulli")
_CAPPED = ("additive", "mixed", "matrix")


@dataclass(frozen=True)
class NoiseOptions:
    mode: str
    rate: float | None = None  # subtractive, additive, uniform (p), swap (patch fraction)
    sub_rate: float | None = None  # mixed
    add_rate: float | None = None  # mixed
    patch_rate: float | None = None  # sample
    class_rate: float | None = None  # sample
    matrix: Path | None = None  # matrix
    sampling: str = "exact"
    splits: tuple[str, ...] = ("train",)
    min_labels: int = 0
    seed: int = 0
    cap: float = 0.95
    classes: tuple[str, ...] | None = None

    def required(self) -> tuple[str, ...]:
        return {
            "subtractive": ("rate",),
            "additive": ("rate",),
            "uniform": ("rate",),
            "swap": ("rate",),
            "mixed": ("sub_rate", "add_rate"),
            "sample": ("patch_rate", "class_rate"),
            "matrix": ("matrix",),
        }[self.mode]

    def validate(self) -> None:
        if self.mode not in MODES:
            raise InvalidParameterError(f"noise mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.sampling not in SAMPLINGS:
            raise InvalidParameterError(f"--sampling {self.sampling!r} is not one of {', '.join(SAMPLINGS)}")
        for name in self.required():
            if getattr(self, name) is None:
                raise InvalidParameterError(f"--mode {self.mode} needs --{name.replace('_', '-')}")
        for name in ("rate", "sub_rate", "add_rate", "patch_rate", "class_rate", "cap"):
            v = getattr(self, name)
            if v is not None and not (0.0 <= v <= 1.0):
                raise InvalidParameterError(f"--{name.replace('_', '-')} must lie in [0, 1], got {v}")
        if self.cap <= 0:
            raise InvalidParameterError(f"--cap must be above 0, got {self.cap}")
        if self.min_labels not in (0, 1):
            raise InvalidParameterError(f"--min-labels must be 0 or 1, got {self.min_labels}")
        unknown = [s for s in self.splits if s not in SPLITS]
        if unknown or not self.splits:
            raise InvalidParameterError(f"--splits {','.join(self.splits)}: give some of {', '.join(SPLITS)}")

    def default_name(self) -> str:
        if self.mode == "mixed":
            rates = f"sub{self.sub_rate:g}_add{self.add_rate:g}"
        elif self.mode == "sample":
            rates = f"patches{self.patch_rate:g}_classes{self.class_rate:g}"
        elif self.mode == "matrix":
            rates = Path(self.matrix).stem
        else:
            rates = f"{self.rate:g}"
        parts = [self.mode, rates, f"seed{self.seed}"]
        if self.sampling != "exact":
            parts.append(self.sampling)
        if self.splits != ("train",):
            parts.append("-".join(self.splits))
        if self.min_labels:
            parts.append(f"min{self.min_labels}")
        if self.classes:
            parts.append(f"{len(self.classes)}classes")
        return "_".join(parts)


@dataclass
class ClassStats:
    name: str
    positives: int
    negatives: int
    requested_remove: float = 0.0
    requested_add: float = 0.0
    removed: int = 0
    added: int = 0
    cap_hit: bool = False
    limited: bool = False


@dataclass
class NoiseResult:
    noisy: np.ndarray  # bool (n_target, C)
    stats: list[ClassStats]
    swaps: list[tuple[int, int, int]] = field(default_factory=list)  # (row, from class, to class)


# --------------------------------------------------------------------------------------------
# Random streams
# --------------------------------------------------------------------------------------------
def stream(seed: int, *key: str) -> np.random.Generator:
    """A generator derived from the seed and a key (mode, class name), stable across platforms."""
    h = hashlib.blake2b("\x1f".join(key).encode(), digest_size=8).digest()
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([int(seed), int.from_bytes(h, "little")]))
    )


def _pick(rng: np.random.Generator, candidates: np.ndarray, k: int) -> np.ndarray:
    if k <= 0 or len(candidates) == 0:
        return candidates[:0]
    return np.sort(rng.choice(candidates, size=min(k, len(candidates)), replace=False))


def _bern(rng: np.random.Generator, candidates: np.ndarray, p: float) -> np.ndarray:
    if len(candidates) == 0 or p <= 0:
        return candidates[:0]
    return candidates[rng.random(len(candidates)) < min(p, 1.0)]


# --------------------------------------------------------------------------------------------
# Class-wise modes
# --------------------------------------------------------------------------------------------
def classwise(
    clean: np.ndarray, classes: list[str], active: np.ndarray, options: NoiseOptions, matrix=None
) -> NoiseResult:
    """subtractive / additive / mixed / uniform / matrix on a bool (n, C) matrix of the target rows."""
    y = clean.copy()
    n = len(y)
    count = y.sum(axis=1)
    stats = []
    exact = options.sampling == "exact"
    for c, name in enumerate(classes):
        pos = np.flatnonzero(clean[:, c])
        neg = np.flatnonzero(~clean[:, c])
        st = ClassStats(name, len(pos), len(neg))
        stats.append(st)
        if not active[c]:
            continue
        rng = stream(options.seed, options.mode, name)
        removable = pos[count[pos] > options.min_labels]
        if options.mode == "uniform":
            p = options.rate
            st.requested_remove, st.requested_add = p * len(pos), p * len(neg)
            if exact:
                pool = np.concatenate([removable, neg])
                chosen = _pick(rng, np.sort(pool), math.floor(p * n))
            else:
                chosen = np.sort(np.concatenate([_bern(rng, removable, p), _bern(rng, neg, p)]))
            remove = chosen[clean[chosen, c]]
            add = chosen[~clean[chosen, c]]
            st.limited = len(removable) < len(pos)
        else:
            r_rate, a_rate = _rates(options, matrix, name)
            want_remove = r_rate * len(pos)
            want_add = a_rate * (len(neg) if options.mode == "matrix" else len(pos))
            st.requested_remove, st.requested_add = want_remove, want_add
            room = max(math.floor(options.cap * n) - len(pos), 0) if options.mode in _CAPPED else len(neg)
            if exact:
                k_remove, k_add = math.floor(want_remove), math.floor(want_add)
                if k_add > room:
                    st.cap_hit, k_add = True, room
                remove = _pick(rng, removable, k_remove)
                add = _pick(rng, neg, k_add)
                st.limited = len(remove) < k_remove
            else:
                p_add = want_add / len(neg) if len(neg) else 0.0
                if want_add > room:
                    st.cap_hit, p_add = True, room / len(neg) if len(neg) else 0.0
                p_remove = want_remove / len(pos) if len(pos) else 0.0
                remove = _bern(rng, removable, p_remove)
                add = _bern(rng, neg, p_add)
                st.limited = len(removable) < len(pos)
        y[remove, c] = False
        y[add, c] = True
        count[remove] -= 1
        count[add] += 1
        st.removed, st.added = len(remove), len(add)
    return NoiseResult(y, stats)


def _rates(options: NoiseOptions, matrix, name: str) -> tuple[float, float]:
    m = options.mode
    if m == "subtractive":
        return options.rate, 0.0
    if m == "additive":
        return 0.0, options.rate
    if m == "mixed":
        return options.sub_rate, options.add_rate
    return matrix.get(name, (0.0, 0.0))


def read_matrix(path: Path, classes: list[str]) -> dict[str, tuple[float, float]]:
    """Per-class (P(1→0), P(0→1)) from JSON ``{"class": [p10, p01]}`` / ``{"class": {"p10":…, "p01":…}}``
    or CSV with columns class, p10, p01. Classes not listed get (0, 0)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"noise matrix {path} does not exist")
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(path.read_text())
            rows = {k: (v["p10"], v["p01"]) if isinstance(v, dict) else (v[0], v[1]) for k, v in doc.items()}
        else:
            import pyarrow.csv as pcsv

            t = pcsv.read_csv(path)
            rows = dict(
                zip(
                    t.column("class").to_pylist(),
                    zip(t.column("p10").to_pylist(), t.column("p01").to_pylist(), strict=True),
                    strict=True,
                )
            )
    except (json.JSONDecodeError, KeyError, IndexError, TypeError, pa.ArrowInvalid) as exc:
        raise InvalidParameterError(
            f"noise matrix {path}: expected JSON {{class: [p10, p01]}} "
            f"or CSV with columns class,p10,p01 ({exc})"
        ) from exc
    unknown = sorted(set(rows) - set(classes))
    if unknown:
        raise InvalidParameterError(
            f"noise matrix {path} names unknown class(es): {', '.join(map(repr, unknown))}"
        )
    for k, (p10, p01) in rows.items():
        for label, v in (("P(1→0)", p10), ("P(0→1)", p01)):
            if not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
                raise InvalidParameterError(f"noise matrix {path}: {label} of {k!r} is {v!r}, outside [0, 1]")
    return {k: (float(a), float(b)) for k, (a, b) in rows.items()}


# --------------------------------------------------------------------------------------------
# Patch-wise modes
# --------------------------------------------------------------------------------------------
def sample_mode(
    clean: np.ndarray, classes: list[str], active: np.ndarray, options: NoiseOptions
) -> NoiseResult:
    """Flip ``class_rate`` of the (active) classes in ``patch_rate`` of the patches."""
    n, _ = clean.shape
    rng = stream(options.seed, "sample")
    exact = options.sampling == "exact"
    rows = (
        _pick(rng, np.arange(n), math.floor(options.patch_rate * n))
        if exact
        else _bern(rng, np.arange(n), options.patch_rate)
    )
    cols = np.flatnonzero(active)
    keys = rng.random((len(rows), len(cols)))
    if exact:
        k = math.floor(options.class_rate * len(cols))
        rank = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")
        flip = rank < k
    else:
        flip = keys < options.class_rate
    y = clean.copy()
    sub = y[np.ix_(rows, cols)]
    sub ^= flip
    if options.min_labels and len(rows):
        empty = np.flatnonzero(sub.sum(axis=1) < options.min_labels)
        for r in empty:  # restore the removed label with the smallest key
            removed = np.flatnonzero(flip[r] & clean[rows[r]][cols])
            if len(removed):
                sub[r, removed[np.argmin(keys[r, removed])]] = True
    y[np.ix_(rows, cols)] = sub
    return NoiseResult(y, _stats_from(clean, y, classes))


def _stats_from(clean: np.ndarray, noisy: np.ndarray, classes: list[str]) -> list[ClassStats]:
    out = []
    for c, name in enumerate(classes):
        st = ClassStats(name, int(clean[:, c].sum()), int((~clean[:, c]).sum()))
        st.removed = int((clean[:, c] & ~noisy[:, c]).sum())
        st.added = int((~clean[:, c] & noisy[:, c]).sum())
        out.append(st)
    return out


def choose_swaps(clean: np.ndarray, active: np.ndarray, options: NoiseOptions) -> list[tuple[int, int, int]]:
    """(row, present class, absent class) for ``rate`` of the rows (those with a class to swap)."""
    n, _ = clean.shape
    rng = stream(options.seed, "swap")
    has_from = (clean & active).any(axis=1)
    has_to = (~clean & active).any(axis=1)
    eligible = np.flatnonzero(has_from & has_to)
    want = math.floor(options.rate * n)
    rows = _pick(rng, eligible, want) if options.sampling == "exact" else _bern(rng, eligible, options.rate)
    out = []
    for r in rows:
        present = np.flatnonzero(clean[r] & active)
        absent = np.flatnonzero(~clean[r] & active)
        out.append((int(r), int(rng.choice(present)), int(rng.choice(absent))))
    return out


# --------------------------------------------------------------------------------------------
# Tables in, files out
# --------------------------------------------------------------------------------------------
def detect_nomenclature(labels: pa.ChunkedArray, source: str) -> Nomenclature:
    names = set(pc.unique(pc.list_flatten(labels)).to_pylist()) - {None}
    for nom in (BEN19, BEN43):
        if names <= set(nom.classes):
            return nom
    unknown = sorted(names - set(BEN19.classes))
    raise InvalidParameterError(
        f"{source}: labels {', '.join(map(repr, unknown[:5]))} belong to neither BEN-19 nor BEN-43"
    )


def label_matrix(labels: pa.ChunkedArray, classes: list[str]) -> np.ndarray:
    """bool (n, C) from a list<string> column (null lists count as no labels)."""
    arr = labels.combine_chunks() if isinstance(labels, pa.ChunkedArray) else labels
    arr = pc.fill_null(arr, pa.scalar([], arr.type)) if arr.null_count else arr
    flat = pc.list_flatten(arr)
    rows = pc.list_parent_indices(arr).to_numpy()
    idx = pc.index_in(flat, value_set=pa.array(classes)).to_numpy(zero_copy_only=False)
    out = np.zeros((len(arr), len(classes)), dtype=bool)
    out[rows, np.asarray(idx, dtype=np.int64)] = True
    return out


def labels_from_matrix(matrix: np.ndarray, classes: list[str]) -> pa.Array:
    """list<element: string> (alphabetical within a row) from a bool matrix."""
    order = np.argsort(np.array(classes, dtype=object))
    m = matrix[:, order]
    _rows, cols = np.nonzero(m)
    offsets = np.zeros(len(m) + 1, dtype=np.int32)
    np.cumsum(m.sum(axis=1), out=offsets[1:])
    values = pa.array(np.array(classes, dtype=object)[order][cols], pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=ds.LABELS_TYPE)


def _input(target: Path) -> tuple[pa.Table, Path, Path]:
    """(table, the parquet read, the noise folder) for a dataset folder or a parquet file."""
    target = Path(target)
    if target.is_dir():
        path = target / ds.METADATA
        if not path.is_file():
            raise InvalidParameterError(f"{target} holds no {ds.METADATA}; build it with `rsprep metadata`")
        return ds.read_table(path, "metadata"), path, target / "noise"
    return ds.read_table(target, "noise input"), target, target.parent / "noise"


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_noise(
    target: Path,
    options: NoiseOptions,
    *,
    name: str | None = None,
    out_dir: Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write one noise variant of the labels of ``target``; returns the JSON report (also written)."""
    t0 = time.perf_counter()
    options.validate()
    table, source, noise_dir = _input(target)
    noise_dir = Path(out_dir) if out_dir else noise_dir
    name = name or options.default_name()
    if not name or "/" in name or name.startswith("."):
        raise InvalidParameterError(f"--name {name!r} must be a plain file name")
    paths = {
        k: noise_dir / f"{name}{s}"
        for k, s in (
            ("labels", ".parquet"),
            ("flips", "_flips.parquet"),
            ("report", ".json"),
            ("maps", "_reference_maps.zarr"),
        )
    }
    if any(p.exists() for p in paths.values()) and not overwrite:
        raise OutputExistsError(
            f"noise variant {noise_dir / name} exists; pass --overwrite or give another --name"
        )
    for col in ("patch_id", "labels", "split"):
        if col not in table.column_names:
            raise InvalidParameterError(
                f"{source} has no {col} column; noise needs patch_id, labels and split"
            )
    table = table.take(pc.sort_indices(table.column("patch_id")))
    nom = detect_nomenclature(table.column("labels"), str(source))
    classes = list(nom.classes)
    if options.classes:
        unknown = [c for c in options.classes if c not in classes]
        if unknown:
            raise InvalidParameterError(
                f"--classes: unknown class(es) {', '.join(map(repr, unknown))}; {nom.name} classes are "
                + ", ".join(classes)
            )
    active = np.array([options.classes is None or c in options.classes for c in classes])
    clean_all = label_matrix(table.column("labels"), classes)
    split = np.asarray(table.column("split").to_numpy(zero_copy_only=False), dtype=object)
    target_rows = np.flatnonzero(np.isin(split, np.array(options.splits, dtype=object)))
    clean = clean_all[target_rows]
    matrix = read_matrix(options.matrix, classes) if options.mode == "matrix" else None
    _check_cap(clean, classes, active, options, matrix, source)

    maps_written = None
    if options.mode == "sample":
        result = sample_mode(clean, classes, active, options)
    elif options.mode == "swap":
        from rsprep.stages.noise_maps import apply_swaps

        swaps = choose_swaps(clean, active, options)
        ids = table.column("patch_id").take(pa.array(target_rows)).to_pylist()
        noisy, maps_written = apply_swaps(target, source, ids, clean, swaps, nom, paths["maps"])
        result = NoiseResult(noisy, _stats_from(clean, noisy, classes), swaps)
    else:
        result = classwise(clean, classes, active, options, matrix)

    noisy_all = clean_all.copy()
    noisy_all[target_rows] = result.noisy
    out = pa.table(
        {
            "patch_id": table.column("patch_id"),
            "split": table.column("split"),
            "labels": labels_from_matrix(clean_all, classes),
            "labels_noisy": labels_from_matrix(noisy_all, classes),
        }
    )
    flips = _flip_log(table.column("patch_id"), clean_all, noisy_all, classes)
    report = _report(options, name, source, table, target_rows, result, classes, active, flips, maps_written)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    report["outputs"] = {k: str(p) for k, p in paths.items() if k != "maps" or maps_written}
    ds.write_parquet(out, paths["labels"])
    ds.write_parquet(flips, paths["flips"])
    write_json_atomic(paths["report"], report)
    return report


def _check_cap(clean, classes, active, options: NoiseOptions, matrix, source) -> None:
    if options.mode not in _CAPPED or len(clean) == 0:
        return
    prevalence = clean.mean(axis=0)
    over = []
    for c, name in enumerate(classes):
        adds = options.add_rate if options.mode == "mixed" else options.rate
        if options.mode == "matrix":
            adds = matrix.get(name, (0.0, 0.0))[1]
        if active[c] and adds and prevalence[c] > options.cap:
            over.append(f"{name!r} ({prevalence[c]:.1%})")
    if over:
        raise InvalidParameterError(
            f"{source}: class prevalence already above the cap of {options.cap:.0%} in the target rows: "
            f"{', '.join(over)}; exclude them with --classes or raise --cap"
        )


def _flip_log(
    patch_id: pa.ChunkedArray, clean: np.ndarray, noisy: np.ndarray, classes: list[str]
) -> pa.Table:
    rows, cols = np.nonzero(clean != noisy)
    action = np.where(noisy[rows, cols], "add", "remove").astype(object)
    return pa.table(
        {
            "patch_id": patch_id.take(pa.array(rows, pa.int64())),
            "class": pa.array(np.array(classes, dtype=object)[cols], pa.string()),
            "action": pa.array(action, pa.string()),
        }
    )


def _report(
    options, name, source, table, target_rows, result, classes, active, flips, maps
) -> dict[str, Any]:
    n = len(target_rows)
    per_class = []
    for st, on in zip(result.stats, active, strict=True):
        d = asdict(st)
        d["active"] = bool(on)
        d["remove_rate"] = st.removed / st.positives if st.positives else 0.0
        d["add_rate_of_positives"] = st.added / st.positives if st.positives else 0.0
        d["add_rate_of_negatives"] = st.added / st.negatives if st.negatives else 0.0
        d["flip_rate"] = (st.removed + st.added) / n if n else 0.0
        d["positives_noisy"] = st.positives - st.removed + st.added
        per_class.append(d)
    opts = asdict(options)
    opts["matrix"] = str(Path(options.matrix).resolve()) if options.matrix else None
    return {
        "name": name,
        "rsprep_version": __version__,
        "configuration": opts,
        "seed": options.seed,
        "input": {
            "path": str(Path(source).resolve()),
            "sha256": _file_hash(Path(source)),
            "rows": table.num_rows,
        },
        "target_rows": n,
        "classes": per_class,
        "totals": {
            "removed": int(sum(s.removed for s in result.stats)),
            "added": int(sum(s.added for s in result.stats)),
            "patches_changed": len(set(flips.column("patch_id").to_pylist())),
            "swaps": len(result.swaps),
        },
        "noisy_maps": maps,
    }

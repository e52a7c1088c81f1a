"""Label-noise models (docs/noise.md): bool label matrices in, noisy label matrices out. No file I/O.

Modes (class-wise ones act on each class c with positives P_c and negatives N_c among the target rows):

- ``subtractive``: remove ``⌊rate·|P_c|⌋`` positives.
- ``additive``: add ``⌊rate·|P_c|⌋`` false positives, capped so that c's prevalence stays ≤ cap (0.95).
- ``mixed``: both, with ``--sub-rate`` and ``--add-rate``; removals come from the clean positives and
  additions from the clean negatives, so they never touch the same entry.
- ``uniform``: flip every (patch, class) entry with probability p (exact: ``⌊p·n⌋`` entries per class).
- ``sample``: in a fraction of the patches, flip a fraction of the classes.
- ``swap``: in a fraction of the patches, relabel every pixel of one present class of the reference map
  as another class (absent before), then derive the labels from the noisy map with the label rule
  (:func:`choose_swaps` and :func:`swap_map` here; the maps themselves are read by the stage).
- ``matrix``: per class P(1→0) and P(0→1) (additions capped like ``additive``).

``--sampling exact`` draws exact counts without replacement; ``bernoulli`` flips each entry independently
with the same expected rate. Rows are sorted by patch_id first and every class draws from its own stream
(seed, mode, class name), so results do not depend on the row order. ``--min-labels 1`` never removes
the last label of a patch (the shortfall is reported as ``limited``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep.core.nomenclature import BEN19, BEN43, Nomenclature
from rsprep.core.splits import SPLITS
from rsprep.errors import InvalidParameterError

MODES = ("subtractive", "additive", "mixed", "uniform", "sample", "swap", "matrix")
SAMPLINGS = ("exact", "bernoulli")
_CAPPED = ("additive", "mixed", "matrix")
#: The ``labels`` column type of the dataset tables (the official ``list<element: string>``, docs/dataset.md).
LABELS_TYPE = pa.list_(pa.field("element", pa.string()))

#: Per-class (P(1→0), P(0→1)) of the ``matrix`` mode; classes not listed get (0, 0).
Matrix = dict[str, tuple[float, float]]


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
    clean: np.ndarray,
    classes: list[str],
    active: np.ndarray,
    options: NoiseOptions,
    matrix: Matrix | None = None,
) -> NoiseResult:
    """subtractive / additive / mixed / uniform / matrix on a bool (n, C) matrix of the target rows."""
    y = clean.copy()
    count = y.sum(axis=1)
    stats = []
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
            remove, add = uniform(rng, clean[:, c], removable, options, st)
        else:
            rates = _rates(options, matrix, name)
            remove, add = _by_rates(rng, len(clean), pos, neg, removable, options, rates, st)
        y[remove, c] = False
        y[add, c] = True
        count[remove] -= 1
        count[add] += 1
        st.removed, st.added = len(remove), len(add)
    return NoiseResult(y, stats)


def uniform(
    rng: np.random.Generator, column: np.ndarray, removable: np.ndarray, options: NoiseOptions, st: ClassStats
) -> tuple[np.ndarray, np.ndarray]:
    """(rows to remove, rows to add) of one class's bool ``column``: each entry flips with p = rate."""
    p = options.rate
    neg = np.flatnonzero(~column)
    st.requested_remove, st.requested_add = p * st.positives, p * st.negatives
    if options.sampling == "exact":
        pool = np.concatenate([removable, neg])
        chosen = _pick(rng, np.sort(pool), math.floor(p * len(column)))
    else:
        chosen = np.sort(np.concatenate([_bern(rng, removable, p), _bern(rng, neg, p)]))
    st.limited = len(removable) < st.positives
    return chosen[column[chosen]], chosen[~column[chosen]]


def _by_rates(
    rng: np.random.Generator,
    n: int,
    pos: np.ndarray,
    neg: np.ndarray,
    removable: np.ndarray,
    options: NoiseOptions,
    rates: tuple[float, float],
    st: ClassStats,
) -> tuple[np.ndarray, np.ndarray]:
    """(rows to remove, rows to add) of one class from its removal and addition rates, capped."""
    r_rate, a_rate = rates
    want_remove = r_rate * len(pos)
    want_add = a_rate * (len(neg) if options.mode == "matrix" else len(pos))
    st.requested_remove, st.requested_add = want_remove, want_add
    room = max(math.floor(options.cap * n) - len(pos), 0) if options.mode in _CAPPED else len(neg)
    if options.sampling == "exact":
        k_remove, k_add = math.floor(want_remove), math.floor(want_add)
        if k_add > room:
            st.cap_hit, k_add = True, room
        remove = _pick(rng, removable, k_remove)
        add = _pick(rng, neg, k_add)
        st.limited = len(remove) < k_remove
        return remove, add
    p_add = want_add / len(neg) if len(neg) else 0.0
    if want_add > room:
        st.cap_hit, p_add = True, room / len(neg) if len(neg) else 0.0
    p_remove = want_remove / len(pos) if len(pos) else 0.0
    remove = _bern(rng, removable, p_remove)
    add = _bern(rng, neg, p_add)
    st.limited = len(removable) < len(pos)
    return remove, add


def _rates(options: NoiseOptions, matrix: Matrix | None, name: str) -> tuple[float, float]:
    m = options.mode
    if m == "subtractive":
        return options.rate, 0.0
    if m == "additive":
        return 0.0, options.rate
    if m == "mixed":
        return options.sub_rate, options.add_rate
    return matrix.get(name, (0.0, 0.0))


def check_cap(
    clean: np.ndarray,
    classes: list[str],
    active: np.ndarray,
    options: NoiseOptions,
    matrix: Matrix | None,
    source: str,
) -> None:
    """Refuse a capped mode that would add to a class whose prevalence is already above the cap."""
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
    return NoiseResult(y, class_stats(clean, y, classes))


def class_stats(clean: np.ndarray, noisy: np.ndarray, classes: list[str]) -> list[ClassStats]:
    """Positives, negatives, removals and additions per class, counted from the two matrices."""
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


def swap_map(reference_map: np.ndarray, nomenclature: Nomenclature, src: int, dst: int) -> np.ndarray:
    """A copy of ``reference_map`` with every pixel of class ``src`` relabelled as class ``dst``."""
    out = reference_map.copy()
    out[np.isin(out, np.asarray(nomenclature.codes[src], dtype=out.dtype))] = nomenclature.codes[dst][0]
    return out


# --------------------------------------------------------------------------------------------
# Label columns <-> bool matrices
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


def active_classes(nomenclature: Nomenclature, chosen: tuple[str, ...] | None) -> np.ndarray:
    """bool (C,): the classes the noise acts on (all when ``chosen`` is None); unknown names are refused."""
    classes = list(nomenclature.classes)
    if chosen:
        unknown = [c for c in chosen if c not in classes]
        if unknown:
            raise InvalidParameterError(
                f"--classes: unknown class(es) {', '.join(map(repr, unknown))}; {nomenclature.name} classes "
                "are " + ", ".join(classes)
            )
    return np.array([chosen is None or c in chosen for c in classes])


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
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=LABELS_TYPE)

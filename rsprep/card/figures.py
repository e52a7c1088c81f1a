"""The card's figures (docs/card.md#figures): matplotlib on the Agg canvas, PNG bytes, deterministic.

Every figure has a fixed size and dpi (``FIGURE_SIZES``, ``preview_size``), is drawn with matplotlib's
default style whatever the user's matplotlibrc says, and is saved without the ``Software`` text chunk
(matplotlib writes no timestamp), so the same data gives the same bytes. Functions take plain arrays
and return the PNG bytes; ``make.py`` decides what to draw and writes the files.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np

from rsprep.core.nomenclature import CLC_LEVEL3

DPI = 100
#: Figure size in inches (width, height) at ``DPI``; the preview grid's height depends on its patches.
FIGURE_SIZES: dict[str, tuple[float, float]] = {
    "class_frequency": (10.0, 8.0),
    "footprints": (8.0, 8.0),
    "cooccurrence": (10.0, 9.0),
    "fractions": (12.0, 4.0),
}
#: Beyond this many patches the map draws centroids instead of footprint polygons.
MAX_POLYGONS = 50_000
SPLIT_COLOURS = {"train": "#1f77b4", "validation": "#ff7f0e", "test": "#2ca02c"}
OTHER_COLOUR = "#7f7f7f"
PREVIEW_PAIRS_PER_ROW = 4
FIGURE_NAMES = ("class_frequency", "footprints", "preview", "cooccurrence", "fractions")

#: The official CORINE Land Cover level-3 legend colours (CLC legend, column RGB); 999 is NODATA.
#: 0 (no CLC polygon) is not a CLC code and is drawn grey.
CLC_COLOURS: dict[int, tuple[int, int, int]] = {
    111: (230, 0, 77), 112: (255, 0, 0), 121: (204, 77, 242), 122: (204, 0, 0), 123: (230, 204, 204),
    124: (230, 204, 230), 131: (166, 0, 204), 132: (166, 77, 0), 133: (255, 77, 255),
    141: (255, 166, 255), 142: (255, 230, 255), 211: (255, 255, 168), 212: (255, 255, 0),
    213: (230, 230, 0), 221: (230, 128, 0), 222: (242, 166, 77), 223: (230, 166, 0),
    231: (230, 230, 77), 241: (255, 230, 166), 242: (255, 230, 77), 243: (230, 204, 77),
    244: (242, 204, 166), 311: (128, 255, 0), 312: (0, 166, 0), 313: (77, 255, 0),
    321: (204, 242, 77), 322: (166, 255, 128), 323: (166, 230, 77), 324: (166, 242, 0),
    331: (230, 230, 230), 332: (204, 204, 204), 333: (204, 255, 204), 334: (0, 0, 0),
    335: (166, 230, 204), 411: (166, 166, 255), 412: (77, 77, 255), 421: (204, 204, 255),
    422: (230, 230, 255), 423: (166, 166, 230), 511: (0, 204, 242), 512: (128, 242, 230),
    521: (0, 255, 166), 522: (166, 255, 230), 523: (230, 242, 255), 999: (255, 255, 255),
}  # fmt: skip
NO_POLYGON_COLOUR = (128, 128, 128)
UNKNOWN_COLOUR = (255, 0, 255)  # a value that is no CLC code


def preview_size(patches: int) -> tuple[float, float]:
    """Size in inches of the preview grid of ``patches`` patches (four image/map pairs per row)."""
    rows = max(1, math.ceil(patches / PREVIEW_PAIRS_PER_ROW))
    return 10.0, 1.4 * rows + 1.0


def pixel_size(name: str, patches: int = 0) -> tuple[int, int]:
    """(width, height) in pixels of figure ``name`` (``preview`` needs its patch count)."""
    w, h = preview_size(patches) if name == "preview" else FIGURE_SIZES[name]
    return round(w * DPI), round(h * DPI)


def _figure(size: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _draw(size: tuple[float, float], draw) -> bytes:
    """Run ``draw(fig)`` on a new figure under matplotlib's default style; return the PNG bytes."""
    import matplotlib.style

    with matplotlib.style.context("default"):
        fig = _figure(size)
        draw(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def short(name: str, width: int = 42) -> str:
    """A class name cut to ``width`` characters for tick labels."""
    return name if len(name) <= width else name[: width - 1] + "…"


def split_colour(split: str) -> str:
    return SPLIT_COLOURS.get(split, OTHER_COLOUR)


def class_frequency(classes: Sequence[str], per_split: dict[str, Sequence[int]]) -> bytes:
    """Horizontal bars: patches per class (paper order, top to bottom), one bar per split."""

    def draw(fig) -> None:
        ax = fig.add_subplot()
        y = np.arange(len(classes))
        height = 0.8 / max(1, len(per_split))
        for k, (split, counts) in enumerate(per_split.items()):
            label = f"{split} ({sum(counts):,} labels)"
            ax.barh(
                y - 0.4 + height * (k + 0.5), counts, height=height, color=split_colour(split), label=label
            )
        ax.set_yticks(y, [f"{i} {short(c)}" for i, c in enumerate(classes)], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("patches with the class")
        ax.set_title("Class frequency per split")
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(axis="x", alpha=0.3)

    return _draw(FIGURE_SIZES["class_frequency"], draw)


def footprints(
    rings: list[np.ndarray] | None,
    lon: np.ndarray,
    lat: np.ndarray,
    splits: np.ndarray,
    borders: list[np.ndarray] | None = None,
) -> bytes:
    """Patch footprints (polygons ``rings``, or centroids ``lon``/``lat`` when None) coloured by split,
    with country borders (lines in lon/lat) when given."""
    from matplotlib.collections import LineCollection, PolyCollection

    def draw(fig) -> None:
        ax = fig.add_subplot()
        names = [s for s in SPLIT_COLOURS if s in set(splits.tolist())]
        names += sorted(set(splits.tolist()) - set(names))
        for name in names:
            sel = splits == name
            label = f"{name} ({int(sel.sum()):,})"
            if rings is not None:
                polys = [rings[i] for i in np.flatnonzero(sel)]
                coll = PolyCollection(polys, facecolors=split_colour(name), edgecolors="none", label=label)
                ax.add_collection(coll)
            else:
                ax.plot(lon[sel], lat[sel], ".", markersize=1, color=split_colour(name), label=label)
        xy = np.concatenate(rings) if rings else np.column_stack([lon, lat])
        _frame(ax, xy[:, 0], xy[:, 1])
        if borders:
            ax.add_collection(LineCollection(borders, colors="black", linewidths=0.5))
        kind = "footprints" if rings is not None else "centroids"
        ax.set_title(f"Patch {kind} by split ({len(lon):,} patches)")
        ax.legend(loc="upper right", fontsize=8, markerscale=8)

    return _draw(FIGURE_SIZES["footprints"], draw)


def _frame(ax, lon: np.ndarray, lat: np.ndarray) -> None:
    """Limits around the patches (a 5 % margin), lon/lat axes with the aspect of the mean latitude."""
    x0, x1, y0, y1 = float(lon.min()), float(lon.max()), float(lat.min()), float(lat.max())
    pad = max(x1 - x0, y1 - y0, 0.05) * 0.05
    ax.set_xlim(x0 - pad, x1 + pad)
    ax.set_ylim(y0 - pad, y1 + pad)
    ax.set_aspect(1.0 / max(0.1, math.cos(math.radians((y0 + y1) / 2))))
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.grid(alpha=0.3)


def cooccurrence(matrix: np.ndarray, classes: Sequence[str]) -> bytes:
    """Heat map of patches holding both classes (the diagonal: patches with the class), log colour."""

    def draw(fig) -> None:
        ax = fig.add_subplot()
        im = ax.imshow(np.log10(1.0 + matrix.astype(np.float64)), cmap="viridis", interpolation="nearest")
        n = len(classes)
        ax.set_xticks(np.arange(n), [str(i) for i in range(n)], fontsize=7)
        ax.set_yticks(np.arange(n), [f"{i} {short(c, 36)}" for i, c in enumerate(classes)], fontsize=7)
        ax.set_title("Label co-occurrence (patches with both classes)")
        fig.colorbar(im, ax=ax, shrink=0.8, label="log10(1 + patches)")

    return _draw(FIGURE_SIZES["cooccurrence"], draw)


def fractions(values: dict[str, np.ndarray]) -> bytes:
    """Histograms (20 bins over [0, 1], log counts) of each SCL fraction column."""

    def draw(fig) -> None:
        axes = fig.subplots(1, len(values), squeeze=False)[0]
        for ax, (name, v) in zip(axes, values.items(), strict=True):
            v = v[np.isfinite(v)]
            ax.hist(v, bins=np.linspace(0.0, 1.0, 21), color="#4c72b0", log=True)
            ax.set_title(f"{name}: {int((v > 0).sum()):,} of {len(v):,} patches > 0", fontsize=9)
            ax.set_xlabel("fraction of the patch (SCL, 20 m)")
            ax.set_xlim(0.0, 1.0)
        axes[0].set_ylabel("patches")

    return _draw(FIGURE_SIZES["fractions"], draw)


def stretch(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) DN → float [0, 1]: the 2nd-98th percentile of the valid (non-zero) values of all three."""
    rgb = rgb.astype(np.float64)
    valid = rgb[(rgb > 0).all(axis=-1)]
    if valid.size == 0:
        return np.zeros_like(rgb)
    lo, hi = np.percentile(valid, [2.0, 98.0])
    return np.clip((rgb - lo) / max(hi - lo, 1.0), 0.0, 1.0)


def colour_map(codes: np.ndarray) -> np.ndarray:
    """(h, w) CLC codes → (h, w, 3) uint8 in the official CLC colours."""
    lut = np.tile(np.array(UNKNOWN_COLOUR, np.uint8), (65536, 1))
    for code, rgb in CLC_COLOURS.items():
        lut[code] = rgb
    lut[0] = NO_POLYGON_COLOUR
    return lut[codes.astype(np.int64)]


def preview(samples: Sequence[tuple[str, np.ndarray, np.ndarray | None]]) -> bytes:
    """Each sample's RGB (B04, B03, B02, stretched) beside its reference map; a legend of the codes seen."""
    from matplotlib.patches import Patch

    def draw(fig) -> None:
        rows = max(1, math.ceil(len(samples) / PREVIEW_PAIRS_PER_ROW))
        grid = fig.add_gridspec(rows + 1, 2 * PREVIEW_PAIRS_PER_ROW, height_ratios=[1.4] * rows + [1.0])
        seen: set[int] = set()
        for i, (name, rgb, ref) in enumerate(samples):
            r, c = divmod(i, PREVIEW_PAIRS_PER_ROW)
            ax = fig.add_subplot(grid[r, 2 * c])
            ax.imshow(stretch(rgb), interpolation="nearest")
            ax.set_title(name, fontsize=6)
            ax.set_axis_off()
            ax = fig.add_subplot(grid[r, 2 * c + 1])
            ax.set_axis_off()
            if ref is not None:
                ax.imshow(colour_map(ref), interpolation="nearest")
                seen |= {int(v) for v in np.unique(ref)}
        legend = fig.add_subplot(grid[rows, :])
        legend.set_axis_off()
        handles = [Patch(color=np.array(_code_colour(v)) / 255, label=_code_label(v)) for v in sorted(seen)]
        if handles:
            legend.legend(handles=handles, loc="center", ncol=4, fontsize=6, frameon=False)

    return _draw(preview_size(len(samples)), draw)


def _code_colour(code: int) -> tuple[int, int, int]:
    return NO_POLYGON_COLOUR if code == 0 else CLC_COLOURS.get(code, UNKNOWN_COLOUR)


def _code_label(code: int) -> str:
    name = {0: "no polygon", 999: "NODATA"}.get(code) or CLC_LEVEL3.get(code, "not a CLC code")
    return f"{code} {short(name, 30)}"

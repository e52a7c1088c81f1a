"""PyTorch access to rsprep datasets (docs/torch.md): a ``Dataset`` over the LMDB, Zarr or GeoTIFF
outputs, and ``rsprep smoke-train``. torch is the optional ``train`` extra and is imported lazily."""

from __future__ import annotations

__all__ = ["BENDataset"]


def __getattr__(name: str):
    """``BENDataset`` on first use: ``import rsprep.torch`` works without torch (docs/torch.md)."""
    if name == "BENDataset":
        from rsprep.torch.dataset import BENDataset, import_torch

        import_torch()
        return BENDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

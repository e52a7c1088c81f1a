"""PyTorch access to rsprep datasets (docs/torch.md): a ``Dataset`` over the LMDB, Zarr or GeoTIFF
outputs, and ``rsprep smoke-train``. torch is the optional ``train`` extra and is imported lazily."""

"""Runs in the interop virtual environment (torchgeo, no rsprep): load every split of a GeoTIFF
layout with TorchGeo's BigEarthNetV2 and print what it read as JSON."""

import json
import sys

from torchgeo.datasets import BigEarthNetV2

root = sys.argv[1]
out = {}
for split in ("train", "val", "test"):
    data = BigEarthNetV2(root, split=split, bands="all")
    rows = []
    for i in range(len(data)):
        sample = data[i]
        rows.append(
            {
                "patch_id": str(data.metadata_df.loc[i, "patch_id"]),
                "s1_name": str(data.metadata_df.loc[i, "s1_name"]),
                "s2_shape": list(sample["image_s2"].shape),
                "s1_shape": list(sample["image_s1"].shape),
                "mask_shape": list(sample["mask"].shape),
                "s2_sums": sample["image_s2"].double().sum(dim=(1, 2)).tolist(),
                "s1_sums": sample["image_s1"].double().sum(dim=(1, 2)).tolist(),
                "mask_values": sorted(int(v) for v in sample["mask"].unique()),
                "labels": [data.class_set[j] for j in sample["label"].nonzero().flatten().tolist()],
            }
        )
    out[split] = rows
json.dump(out, sys.stdout)

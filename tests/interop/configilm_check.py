"""Runs in the interop virtual environment (configilm, no rsprep): read every split of an LMDB plus
the metadata files with ConfigILM's BENv2DataSet and print what it read as JSON."""

import json
import sys

from configilm.extra.DataSets.BENv2_DataSet import BENv2DataSet

lmdb_dir, metadata, flagged = sys.argv[1:4]
out = {}
for split in ("train", "validation", "test"):
    data = BENv2DataSet(
        {"images_lmdb": lmdb_dir, "metadata_parquet": metadata, "metadata_snow_cloud_parquet": flagged},
        split=split,
        img_size=(14, 120, 120),
        return_extras=True,
        include_cloudy=True,
        include_snowy=True,
    )
    rows = []
    for i in range(len(data)):
        img, labels, key = data[i]
        rows.append(
            {
                "patch_id": key,
                "channels": list(data.channel_order),
                "shape": list(img.shape),
                "sums": img.double().sum(dim=(1, 2)).tolist(),
                "labels": labels.tolist(),
            }
        )
    out[split] = rows
json.dump(out, sys.stdout)

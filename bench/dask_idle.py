"""The CPU seconds an idle Dask LocalCluster burns: its scheduler, nannies and client in this process,
and each worker process (a part of bench/bench_dask.py; run alone to check one configuration).

    python bench/dask_idle.py rsprep|defaults [--workers 2] [--seconds 60]

``rsprep``: the cluster ``rsprep build --cluster local`` starts (rsprep.build.dask_cluster.start_cluster,
with its worker settings); ``defaults``: a LocalCluster of the same shape with Dask's default settings.
Prints one JSON line: the seconds measured, the CPU seconds of this process and of each worker.
"""

from __future__ import annotations

import argparse
import json
import time


def open_cluster(kind: str, workers: int):
    """(client, close) of a LocalCluster of ``workers`` processes, one thread each, on loopback."""
    if kind == "rsprep":
        from rsprep.build.dask_cluster import start_cluster
        from rsprep.build.recipe import load_recipe
        from rsprep.build.recipe_cluster import with_cluster

        section = with_cluster(load_recipe("demo"), "local", [f"processes={workers}"]).cluster
        return start_cluster(section, workers)
    import distributed

    cluster = distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    client = distributed.Client(cluster, set_as_default=False)

    def close() -> None:
        client.close()
        cluster.close()

    return client, close


def measure(kind: str, workers: int, seconds: float) -> dict:
    client, close = open_cluster(kind, workers)
    try:
        client.wait_for_workers(workers)
        time.sleep(5)  # start-up done
        me, them, t = time.process_time(), client.run(time.process_time), time.perf_counter()
        time.sleep(seconds)
        me2, them2, dt = time.process_time(), client.run(time.process_time), time.perf_counter() - t
    finally:
        close()
    return {
        "kind": kind,
        "seconds": round(dt, 2),
        "client_s": round(me2 - me, 2),
        "workers_s": [round(them2[w] - them[w], 2) for w in sorted(them)],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=("rsprep", "defaults"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    print(json.dumps(measure(args.kind, args.workers, args.seconds)))


if __name__ == "__main__":
    main()

"""The speed suite's measurements, by the name of their section in results.json."""

from __future__ import annotations

from speed_suite.cka import cka_bench
from speed_suite.floor import floor_bench
from speed_suite.host_memory import host_memory_bench
from speed_suite.kmeans import kmeans_bench
from speed_suite.syncs import sync_bench
from speed_suite.training import train_bench

#: the measurements, by the name of their section in results.json
MEASURE = {
    "training": train_bench,
    "syncs": sync_bench,
    "floor": floor_bench,
    "host_memory": host_memory_bench,
    "cka": lambda args: cka_bench(reps=args.cka_reps),
    "kmeans": lambda args: kmeans_bench(args.glue_dir, args.kmeans_rows, args.kmeans_k, reps=1),
}


PARTS = tuple(MEASURE)

"""Matrix-vector products from memory: row-major (nn.Linear's layout) against column-major
(eigenscope.column_major_: W^T contiguous), side by side, on SmolLM2-135M's Linear shapes.

Each timed call reads a weight copy the previous calls did not touch (copies cycled over more
than the last-level caches), as decoding a model does; rounds alternate between the layouts and
the best of --repeats is kept. Printed: microseconds per call and GB/s of weight read.

    python benchmarks/gemv_layout.py [--threads 1] [--repeats 7]
"""
from __future__ import annotations

import argparse
from functools import partial

import pandas as pd
import torch
import torch.nn.functional as F

from eigenscope.compression.latency import _runner

POOL_BYTES = 256 * 2**20
# (label, [weight shapes applied in turn]) -- a factorised Linear is down (r, n) then up (m, r)
SHAPES = [
    ("dense q/o 576x576", [(576, 576)]),
    ("dense up/gate 1536x576", [(1536, 576)]),
    ("dense down 576x1536", [(576, 1536)]),
    ("r128 down 128x576", [(128, 576)]),
    ("r128 up 1536x128", [(1536, 128)]),
    ("r128 factorised 576->1536", [(128, 576), (1536, 128)]),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pool = torch.rand(POOL_BYTES // 4) - 0.5
    cpu = torch.device("cpu")
    rows = []
    for label, shapes in SHAPES:
        x = torch.randn(1, shapes[0][1])
        # the latency table's timer: weight copies cycled through memory, calls per round adapted
        runs = {lay: _runner(partial(_chain, x), shapes, pool, column_major=lay == "col")
                for lay in ("row", "col")}
        best = {lay: float("inf") for lay in runs}
        with torch.no_grad():
            for rep in range(args.repeats + 1):  # round 0 warms up and is not counted
                for lay, run in runs.items():
                    t = run(cpu)
                    best[lay] = min(best[lay], t) if rep else best[lay]
        nbytes = 4 * sum(m * n for m, n in shapes)
        rows.append({"weights": label, "row us": best["row"] * 1e6, "col us": best["col"] * 1e6,
                     "row GB/s": nbytes / best["row"] / 1e9, "col GB/s": nbytes / best["col"] / 1e9,
                     "col speed-up": best["row"] / best["col"]})
    print(f"{torch.get_num_threads()} thread(s), float32, batch 1, best of {args.repeats}")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3g}"))


def _chain(x, ws):
    """x through each weight in turn: one GEMV, or down then up of a factorised Linear."""
    for W in ws:
        x = F.linear(x, W)
    return x


if __name__ == "__main__":
    main()

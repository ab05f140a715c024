"""Shared test set-up: one torch thread per process (2 shared cores; oversubscription makes
matrix-heavy tests many times slower), and the Agg backend for plots."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(1)

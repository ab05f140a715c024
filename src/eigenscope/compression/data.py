"""Calibration text -> batches of token ids."""
from __future__ import annotations

import torch

from ..errors import EigenscopeError


def default_text() -> str:
    """English prose shipped with Python: the pydoc topics (~465k characters)."""
    from pydoc_data.topics import topics
    return "\n\n".join(topics[k] for k in sorted(topics))


def token_ids(text, tokenizer) -> torch.Tensor:
    if tokenizer is None:
        raise EigenscopeError("calibration text needs a tokenizer (pass tokenizer= or token ids)")
    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)


def calibration_batches(calibration, tokenizer, *, seq_len: int, n_seqs: int, batch_size: int,
                        needed: bool = True) -> list[torch.Tensor]:
    """A list of (b, seq_len) LongTensors: the first n_seqs full chunks of the text."""
    if not needed:
        return []
    if isinstance(calibration, torch.Tensor):
        ids = calibration.long()
        if ids.dim() != 2:
            raise EigenscopeError(f"calibration ids must be (N, T), got shape {tuple(ids.shape)}")
    else:
        text = default_text() if calibration is None else str(calibration)
        flat = token_ids(text, tokenizer)
        n = min(n_seqs, flat.numel() // seq_len)
        if n < 2:
            raise EigenscopeError(f"calibration text too short: {flat.numel()} tokens, need at "
                                  f"least 2 x {seq_len}")
        ids = flat[: n * seq_len].view(n, seq_len)
    return list(ids.split(batch_size))


# Evaluating on the default text skips this many tokens: 4x the default calibration (32 x 256),
# so a model is never scored on text it was calibrated on.
HELD_OUT_SKIP = 4 * 32 * 256

"""What a model is fed: calibration and evaluation inputs, in every form people have them.

Everywhere eigenscope runs a model on data (compress's calibration, evaluate, activations) it
accepts the same `inputs`:
- None: Python's own documentation (the pydoc topics, ~465k characters), tokenized;
- a str: text, tokenized and cut into windows of `seq_len` tokens;
- a LongTensor (N, T) of token ids;
- a float tensor (N, ...) of model inputs (features of an MLP, images of a CNN or a ViT);
- a dict of tensors sharing their first dimension (input_ids + attention_mask,
  input_ids + decoder_input_ids, pixel_values ...): keyword inputs of the model;
- an iterable of such tensors or dicts (a list, a DataLoader), each item one batch; a tuple or
  list item (what a DataLoader over a TensorDataset yields) stands for its first element.
A batch is a tensor or a dict of tensors; `call_model` turns it into the model's call.

    >>> import torch
    >>> b = model_batches(torch.zeros(10, 4, dtype=torch.long), batch_size=4)
    >>> [tuple(x.shape) for x in b]
    [(4, 4), (4, 4), (2, 4)]
    >>> call_model(torch.nn.Linear(3, 2), torch.ones(5, 3)).shape
    torch.Size([5, 2])
"""
from __future__ import annotations

import inspect
from itertools import islice
from typing import Union

import torch
from torch import nn

from .errors import EigenscopeError

Batch = Union[torch.Tensor, dict]

# compress's calibration defaults; evaluate skips HELD_OUT_SKIP tokens of the default text so a
# model is never scored on what it was calibrated on (4x margin: larger --calib-seqs stay clear).
DEFAULT_SEQ_LEN = 256
DEFAULT_CALIB_SEQS = 32
HELD_OUT_SKIP = 4 * DEFAULT_CALIB_SEQS * DEFAULT_SEQ_LEN


def default_text() -> str:
    """English prose shipped with Python: the pydoc topics (~465k characters)."""
    from pydoc_data.topics import topics
    return "\n\n".join(topics[k] for k in sorted(topics))


def token_ids(text: str, tokenizer) -> torch.Tensor:
    """(T,) LongTensor of the text's token ids, without special tokens."""
    if tokenizer is None:
        raise EigenscopeError("text inputs need a tokenizer: pass tokenizer=, or give token ids, "
                              "tensors or a dict of model inputs instead of text")
    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)


def text_windows(text: str | None, tokenizer, *, seq_len: int, max_seqs: int, skip: int = 0,
                 min_seqs: int = 1, what: str = "text") -> torch.Tensor:
    """(n, seq_len) ids: the first `max_seqs` whole windows of the text after `skip` tokens."""
    flat = token_ids(default_text() if text is None else text, tokenizer)[skip:]
    n = min(max_seqs, flat.numel() // seq_len)
    if n < min_seqs:
        raise EigenscopeError(f"{what} too short: {flat.numel()} tokens"
                              + (f" after skipping {skip}" if skip else "")
                              + f", need at least {min_seqs} x {seq_len}")
    return flat[: n * seq_len].view(n, seq_len)


def model_batches(inputs=None, *, tokenizer=None, seq_len: int = DEFAULT_SEQ_LEN,
                  n_seqs: int = DEFAULT_CALIB_SEQS, batch_size: int = 8,
                  min_seqs: int = 1) -> list[Batch]:
    """A list of batches from any accepted `inputs` (module docstring); at most `n_seqs` samples
    of text, all rows of a tensor or dict, items of an iterable until `n_seqs` samples."""
    if inputs is None or isinstance(inputs, str):
        ids = text_windows(inputs, tokenizer, seq_len=seq_len, max_seqs=n_seqs,
                           min_seqs=min_seqs, what="calibration text")
        return list(ids.split(batch_size))
    if isinstance(inputs, (torch.Tensor, dict)):
        return split_batch(_checked(inputs, "inputs"), batch_size)
    if isinstance(inputs, (bytes, int, float)) or not hasattr(inputs, "__iter__"):
        raise EigenscopeError(f"cannot use a {type(inputs).__name__} as model inputs: give text, "
                              "a tensor, a dict of tensors or an iterable of them")
    out, seen = [], 0
    for i, item in enumerate(islice(iter(inputs), 100_000)):
        item = _checked(item[0] if isinstance(item, (tuple, list)) and item else item, f"item {i}")
        out.append(item)
        seen += batch_len(item)
        if seen >= n_seqs:
            break
    if not out:
        raise EigenscopeError("the inputs are empty: no batch to run the model on")
    return out


def _checked(x, what: str) -> Batch:
    if isinstance(x, torch.Tensor):
        if x.dim() == 0 or x.shape[0] == 0:
            raise EigenscopeError(f"{what}: a tensor of shape {tuple(x.shape)} holds no samples")
        if not (x.is_floating_point() or x.dtype in (torch.long, torch.int, torch.int16)):
            raise EigenscopeError(f"{what}: tensors must be token ids or floats, not {x.dtype}")
        if not x.is_floating_point():
            if x.dim() != 2:
                raise EigenscopeError(f"{what}: token ids must be (N, T), got shape {tuple(x.shape)}")
            return x.long()
        return x
    if isinstance(x, dict):
        if not x or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in x.items()):
            raise EigenscopeError(f"{what}: a dict of inputs maps argument names to tensors")
        sizes = {v.shape[0] if v.dim() else 0 for v in x.values()}
        if len(sizes) != 1 or 0 in sizes:
            raise EigenscopeError(f"{what}: the tensors of a dict of inputs must share their first "
                                  f"dimension (got {sorted(sizes)})")
        return dict(x)
    raise EigenscopeError(f"{what}: a {type(x).__name__} is not model input (a tensor or a dict)")


def batch_len(batch: Batch) -> int:
    """Samples (sequences, images) in a batch."""
    return int(next(iter(batch.values())).shape[0] if isinstance(batch, dict) else batch.shape[0])


def split_batch(batch: Batch, size: int) -> list[Batch]:
    """Cut a tensor or a dict of tensors into batches of `size` samples along dim 0."""
    if isinstance(batch, torch.Tensor):
        return list(batch.split(size))
    parts = {k: v.split(size) for k, v in batch.items()}
    return [{k: parts[k][i] for k in parts} for i in range(len(next(iter(parts.values()))))]


def call_model(model: nn.Module, batch: Batch, **kw):
    """Run `model` on one batch: keyword inputs for Hugging Face models (token ids as input_ids,
    floats as pixel_values, decoder inputs made by shifting the ids for encoder-decoders, no KV
    cache), the tensor itself for plain modules. `kw` is passed on (e.g. labels=)."""
    params = inspect.signature(model.forward).parameters
    if isinstance(batch, torch.Tensor):
        key = "input_ids" if not batch.is_floating_point() else "pixel_values"
        if key not in params:
            return model(batch, **kw)
        batch = {key: batch}
    kwargs = {**batch, **kw}
    if "use_cache" in params:
        kwargs.setdefault("use_cache", False)
    if _needs_decoder_inputs(model, params, kwargs):
        kwargs["decoder_input_ids"] = shift_right(kwargs["input_ids"], model.config)
    return model(**kwargs)


def _needs_decoder_inputs(model, params, kwargs) -> bool:
    config = getattr(model, "config", None)
    return (bool(getattr(config, "is_encoder_decoder", False)) and "decoder_input_ids" in params
            and "input_ids" in kwargs and not {"decoder_input_ids", "decoder_inputs_embeds",
                                               "labels"} & set(kwargs))


def lm_labels(batch: Batch) -> torch.Tensor:
    """The token ids of a batch: the labels of its language-model loss."""
    ids = batch.get("input_ids") if isinstance(batch, dict) else batch
    if ids is None or ids.is_floating_point():
        raise EigenscopeError("gradient statistics need token ids (a language-model loss); "
                              "use method 'whiten' for models fed other inputs")
    return ids


def has_lm_loss(model: nn.Module) -> bool:
    """A causal LM (Hugging Face *ForCausalLM / *LMHeadModel): forward takes labels, returns a
    language-model loss."""
    name = type(model).__name__
    return ("labels" in inspect.signature(model.forward).parameters
            and name.endswith(("ForCausalLM", "LMHeadModel")))


def shift_right(ids: torch.Tensor, config) -> torch.Tensor:
    """Decoder inputs for teacher forcing on `ids`: the decoder start token, then ids[:, :-1]."""
    start = getattr(config, "decoder_start_token_id", None)
    if start is None:
        start = getattr(config, "pad_token_id", None) or 0
    return torch.cat([ids.new_full((ids.shape[0], 1), int(start)), ids[:, :-1]], dim=1)


def tokenizer_for(model: nn.Module):
    """The tokenizer saved beside a Hugging Face model's own folder (config._name_or_path), or
    None. Only a local folder is tried; nothing is downloaded."""
    from pathlib import Path

    folder = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    if not folder or not Path(folder).is_dir():
        return None
    try:
        from transformers import AutoTokenizer
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (ImportError, OSError, ValueError, TypeError):
        return None

"""`eigenscope.evaluate(model, text)`: perplexity, size and speed; with a reference, how far apart.

Causal LMs: perplexity = exp(mean token NLL) over non-overlapping windows of `seq_len` tokens;
kl = mean over tokens of KL(p_ref || p_model); top1_agreement = share of tokens whose argmax agrees.
Other models (encoders such as MiniLM, vision models, plain modules): perplexity is not defined
and is NaN; with a reference we compare the main outputs (logits, else the last hidden states,
else the output tensor): cosine = mean cosine similarity per token (or per sample), rel_error =
||h - h_ref|| / ||h_ref||, and, for classifier outputs (b, classes), top1_agreement = share of
samples whose argmax agrees; kl is NaN. Text is evaluated in windows of `seq_len` tokens; other
inputs (tensors, dicts, DataLoaders: eigenscope.inputs) batch by batch.
Models with hidden states: matrix_entropy and matrix_nuclear_norm of the final representations
(the last hidden states), per window, averaged over windows (docs/methods-activations.md).
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from .inputs import (HELD_OUT_SKIP, batch_len, call_model, model_batches, text_windows,
                     tokenizer_for)


def evaluate(model, inputs=None, *, reference=None, tokenizer=None, seq_len: int = 256,
             max_tokens: int = 8192, skip_tokens: int | None = None, batch_size: int = 4) -> dict:
    """Dict with perplexity, parameters, bytes, tokens_per_s (+ kl, top1_agreement, cosine,
    rel_error with `reference`). `inputs`: text (default: the pydoc text) or any model inputs
    (eigenscope.inputs). `skip_tokens` drops the start of the text (e.g. the calibration); by
    default 0 for a given text and HELD_OUT_SKIP (inputs.py) for the default pydoc text, past
    what `compress` calibrates on by default."""
    from .models import load_model
    from .validate import check_args

    check_args("evaluate", locals(), source=model)      # every option, before any work
    if not isinstance(model, torch.nn.Module):
        model, tok = load_model(model)
        tokenizer = tokenizer or tok
    if reference is not None and not isinstance(reference, torch.nn.Module):
        reference, tok = load_model(reference)
        tokenizer = tokenizer or tok
    if tokenizer is None:  # a module: the tokenizer saved in its own folder, if any
        tokenizer = tokenizer_for(model) or (tokenizer_for(reference) if reference is not None else None)
    batches = _batches(inputs, tokenizer, seq_len, max_tokens, skip_tokens, batch_size)
    model.eval()
    res = dict(parameters=sum(p.numel() for p in model.parameters()),
               bytes=sum(p.numel() * p.element_size() for p in model.parameters()))
    acc = _Acc()
    spent = 0.0
    hidden_kw = {"output_hidden_states": True} if hasattr(model, "config") else {}
    with torch.no_grad():
        for batch in batches:
            t0 = time.perf_counter()
            out = call_model(model, batch, **hidden_kw)
            spent += time.perf_counter() - t0
            ref = call_model(reference, batch) if reference is not None else None
            acc.add(out, ref, batch)
    items = sum(_items(b) for b in batches)
    res["tokens_per_s"] = items / max(spent, 1e-9)
    res["tokens"] = items
    res.update(acc.result(reference is not None))
    return res


def _batches(inputs, tokenizer, seq_len, max_tokens, skip_tokens, batch_size):
    if inputs is None or isinstance(inputs, str):
        skip = (HELD_OUT_SKIP if inputs is None else 0) if skip_tokens is None else skip_tokens
        ids = text_windows(inputs, tokenizer, seq_len=seq_len,
                           max_seqs=max(max_tokens // seq_len, 1), skip=skip, what="evaluation text")
        return list(ids.split(batch_size))
    return model_batches(inputs, batch_size=batch_size, n_seqs=10**9)


def _ids(batch):
    """Token ids of a batch (the LM's labels), or None for other inputs."""
    ids = batch.get("input_ids") if isinstance(batch, dict) else batch
    return ids if isinstance(ids, torch.Tensor) and not ids.is_floating_point() else None


def _items(batch) -> int:
    ids = _ids(batch)
    return int(ids.numel()) if ids is not None else batch_len(batch)


class _Acc:
    """Running sums: token NLL / KL / agreement of an LM, or output agreement of anything else."""

    def __init__(self):
        self.nll = self.kl = self.agree = self.cos = self.err2 = self.ref2 = 0.0
        self.me = self.mnn = 0.0
        self.n = self.n_cls = self.seqs = 0
        self.lm = None

    def add(self, out, ref, batch):
        self._scores(out)
        logits, ids = getattr(out, "logits", None), _ids(batch)
        self.lm = logits is not None and ids is not None and logits.dim() == 3
        if self.lm:
            lp = F.log_softmax(logits[:, :-1].float(), -1)          # (b, T-1, V)
            self.nll += float(-lp.gather(-1, ids[:, 1:, None]).sum())
            self.n += lp.shape[0] * lp.shape[1]
            if ref is not None:
                lq = F.log_softmax(ref.logits[:, :-1].float(), -1)  # reference (b, T-1, V)
                self.kl += float((lq.exp() * (lq - lp)).sum())
                self.agree += float((lq.argmax(-1) == lp.argmax(-1)).sum())
            return
        h = _main(out)                                              # (b, T, d) or (b, d)
        self.n += h.shape[0] * (h.shape[1] if h.dim() > 2 else 1)
        if ref is not None:
            hr = _main(ref)
            self.cos += float(F.cosine_similarity(h, hr, dim=-1).sum())
            self.err2 += float((h - hr).pow(2).sum())
            self.ref2 += float(hr.pow(2).sum())
            if h.dim() == 2:                                        # classifier outputs
                self.agree += float((h.argmax(-1) == hr.argmax(-1)).sum())
                self.n_cls += h.shape[0]

    def _scores(self, out):
        from .maths.activations import matrix_entropy, matrix_nuclear_norm

        states = getattr(out, "hidden_states", None)
        h = states[-1] if states else getattr(out, "last_hidden_state", None)
        if not isinstance(h, torch.Tensor) or h.dim() != 3:
            return
        self.me += float(matrix_entropy(h).sum())                  # h (b, T, d): per window
        self.mnn += float(matrix_nuclear_norm(h).sum())
        self.seqs += h.shape[0]

    def result(self, with_ref: bool) -> dict:
        nan = float("nan")
        res = dict(perplexity=math.exp(self.nll / self.n) if self.lm else nan,
                   matrix_entropy=self.me / self.seqs if self.seqs else nan,
                   matrix_nuclear_norm=self.mnn / self.seqs if self.seqs else nan)
        if with_ref:
            top1 = self.agree / self.n if self.lm else (self.agree / self.n_cls if self.n_cls else nan)
            res.update(kl=self.kl / self.n if self.lm else nan, top1_agreement=top1,
                       cosine=nan if self.lm else self.cos / self.n,
                       rel_error=nan if self.lm else math.sqrt(self.err2 / max(self.ref2, 1e-300)))
        return res


def _main(out) -> torch.Tensor:
    """The main output: logits, else the last hidden states, else the tensor itself (float)."""
    for key in ("logits", "last_hidden_state"):
        h = getattr(out, key, None)
        if h is not None:
            return h.float()
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out.float()

"""`eigenscope.evaluate(model, text)`: perplexity, size and speed; with a reference, how far apart.

Causal LMs: perplexity = exp(mean token NLL) over non-overlapping windows of `seq_len` tokens;
kl = mean over tokens of KL(p_ref || p_model); top1_agreement = share of tokens whose argmax agrees.
Encoders (no LM head, e.g. MiniLM): perplexity is not defined and is NaN; with a reference we
compare the last hidden states instead: cosine = mean token cosine similarity, rel_error =
||h - h_ref|| / ||h_ref|| over all tokens; kl and top1_agreement are NaN.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from .inputs import HELD_OUT_SKIP, call_model, text_windows
from .errors import EigenscopeError


def evaluate(model, text: str | None = None, *, reference=None, tokenizer=None, seq_len: int = 256,
             max_tokens: int = 8192, skip_tokens: int | None = None, batch_size: int = 4) -> dict:
    """Dict with perplexity, parameters, bytes, tokens_per_s (+ kl, top1_agreement, cosine,
    rel_error with `reference`). `skip_tokens` drops the start of the text (e.g. the calibration);
    by default 0 for a given text and HELD_OUT_SKIP (inputs.py) for the default pydoc text, past
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
    if skip_tokens is None:
        skip_tokens = HELD_OUT_SKIP if text is None else 0
    ids = text_windows(text, tokenizer, seq_len=seq_len, max_seqs=max(max_tokens // seq_len, 1),
                       skip=skip_tokens, what="evaluation text")
    model.eval()
    res = dict(parameters=sum(p.numel() for p in model.parameters()),
               bytes=sum(p.numel() * p.element_size() for p in model.parameters()))
    acc = _Acc()
    t0 = time.perf_counter()
    ref_time = 0.0
    with torch.no_grad():
        for batch in ids.split(batch_size):
            out = call_model(model, batch)
            t1 = time.perf_counter()
            ref = call_model(reference, batch) if reference is not None else None
            ref_time += time.perf_counter() - t1
            acc.add(out, ref, batch)
    res["tokens_per_s"] = ids.numel() / max(time.perf_counter() - t0 - ref_time, 1e-9)
    res["tokens"] = int(ids.numel())
    res.update(acc.result(reference is not None))
    return res


class _Acc:
    """Running sums over tokens; logits of an LM or last hidden states of an encoder."""

    def __init__(self):
        self.nll = self.kl = self.agree = self.cos = self.err2 = self.ref2 = 0.0
        self.n = 0
        self.lm = None

    def add(self, out, ref, ids):
        logits = getattr(out, "logits", None)
        self.lm = logits is not None
        if self.lm:
            lp = F.log_softmax(logits[:, :-1].float(), -1)          # (b, T-1, V)
            self.nll += float(-lp.gather(-1, ids[:, 1:, None]).sum())
            self.n += lp.shape[0] * lp.shape[1]
            if ref is not None:
                lq = F.log_softmax(ref.logits[:, :-1].float(), -1)  # reference (b, T-1, V)
                self.kl += float((lq.exp() * (lq - lp)).sum())
                self.agree += float((lq.argmax(-1) == lp.argmax(-1)).sum())
            return
        h = _hidden(out)                                            # (b, T, d)
        self.n += h.shape[0] * h.shape[1]
        if ref is not None:
            hr = _hidden(ref)
            self.cos += float(F.cosine_similarity(h, hr, dim=-1).sum())
            self.err2 += float((h - hr).pow(2).sum())
            self.ref2 += float(hr.pow(2).sum())

    def result(self, with_ref: bool) -> dict:
        nan = float("nan")
        res = dict(perplexity=math.exp(self.nll / self.n) if self.lm else nan)
        if with_ref:
            res.update(kl=self.kl / self.n if self.lm else nan,
                       top1_agreement=self.agree / self.n if self.lm else nan,
                       cosine=nan if self.lm else self.cos / self.n,
                       rel_error=nan if self.lm else math.sqrt(self.err2 / max(self.ref2, 1e-300)))
        return res


def _hidden(out):
    h = getattr(out, "last_hidden_state", None)
    return (out if h is None else h).float()

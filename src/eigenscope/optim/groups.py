"""Split a model's parameters into hidden matrices (Muon) and everything else (AdamW)."""
from __future__ import annotations

import re

from torch import nn

# Output heads by name (HF: lm_head, embed_out; GPT-2: wte tied; others: output, head, classifier)
HEAD_PATTERN = r"(^|\.)(lm_head|embed_out|output|head|classifier|score)(\.|$)"


def split_param_groups(model: nn.Module, *, head_pattern: str = HEAD_PATTERN,
                       ) -> list[dict]:
    """[matrices, other]: two param groups, usable as Muon(groups[0:1]) + AdamW(groups[1:2]).

    "matrices": 2-D weights of hidden layers (Linear, LowRankLinear's down/up, ...).
    "other": embeddings (every nn.Embedding weight and any parameter tied to one), output heads
    (module names matching head_pattern), 1-D parameters (biases, norms) and >2-D ones.
    Each group has "params", "names" and "name" keys; extra keys are kept by torch optimisers.
    Frozen parameters (requires_grad False) are left out.
    """
    emb = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    head = re.compile(head_pattern)
    mats, other = ([], []), ([], [])
    for name, p in model.named_parameters():       # tied parameters are listed once
        if not p.requires_grad:
            continue
        hidden = p.ndim == 2 and id(p) not in emb and not head.search(name.rsplit(".", 1)[0])
        dest = mats if hidden else other
        dest[0].append(p)
        dest[1].append(name)
    return [{"params": mats[0], "names": mats[1], "name": "matrices"},
            {"params": other[0], "names": other[1], "name": "other"}]

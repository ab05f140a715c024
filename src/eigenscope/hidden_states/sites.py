"""Where hidden states are read: sites of each repeated block, found by module structure.

    residual    the block's output (the residual stream after the block)
    attn_out    the output of the block's attention module (as the model defines it: BERT's
                BertAttention already adds the residual and normalises)
    mlp_in      the input of the block's MLP module (mlp, feed_forward, ffn; BERT: intermediate)
    mlp_hidden  the input of the block's last Linear outside attention (down_proj, c_proj,
                fc2, BERT's output.dense): the MLP's hidden activations

A model without repeated blocks (a plain MLP) has one layer per Linear and only `residual`,
read at that Linear's output. A compressed model's LowRankLinear counts as one Linear.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..compression.targets import find_blocks   # the one place blocks are found
from ..errors import EigenscopeError
from ..nn.lowrank import LowRankLinear
from .schema import DEFAULT_SITES, SITES

ATTN = re.compile(r"(^|\.)(self_attn|self_attention|attn|attention)$")
MLP = re.compile(r"(^|\.)(mlp|feed_forward|ffn|intermediate)$")


@dataclass(frozen=True)
class Site:
    """One place to read: `where` is 'output' (forward hook) or 'input' (forward pre-hook)."""
    name: str
    layer: int
    site: str
    module_name: str
    module: nn.Module
    where: str


def resolve_sites(sites) -> tuple[str, ...]:
    """None -> the default; 'all'; a comma-separated string or a list of site names."""
    if sites is None:
        return DEFAULT_SITES
    if isinstance(sites, str):
        sites = [s for s in re.split(r"[,\s]+", sites) if s]
    sites = tuple(dict.fromkeys(sites))
    if "all" in sites:
        return SITES
    bad = [s for s in sites if s not in SITES]
    if bad or not sites:
        raise EigenscopeError(f"unknown site {bad[0] if bad else '(none)'!r}; choose from: all, "
                              + ", ".join(SITES))
    return sites


def _linear_like(mod: nn.Module) -> bool:
    return isinstance(mod, (nn.Linear, LowRankLinear)) or type(mod).__name__ == "Conv1D"


def _linears(root: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Linear-like modules in definition order; nothing inside a LowRankLinear."""
    out, inside = [], []
    for n, m in root.named_modules(prefix=prefix):
        if any(n.startswith(p + ".") for p in inside):
            continue
        if _linear_like(m):
            out.append((n, m))
            if isinstance(m, LowRankLinear):
                inside.append(n)
    return out


def _shallowest(block: nn.Module, bname: str, pattern) -> tuple[str, nn.Module] | None:
    found = [(n, m) for n, m in block.named_modules(prefix=bname) if n != bname and
             pattern.search(n[len(bname) + 1:])]
    return min(found, key=lambda nm: nm[0].count("."), default=None)


def _block_site(block, bname: str, layer: int, site: str) -> Site:
    def make(mod_name, mod, where):
        return Site(f"{bname}:{site}", layer, site, mod_name, mod, where)

    if site == "residual":
        return make(bname, block, "output")
    attn = _shallowest(block, bname, ATTN)
    if site == "attn_out" and attn:
        return make(attn[0], attn[1], "output")
    mlp = _shallowest(block, bname, MLP)
    if site == "mlp_in" and mlp:
        return make(mlp[0], mlp[1], "input")
    if site == "mlp_hidden":
        outside = [(n, m) for n, m in _linears(block, bname)
                   if not (attn and n.startswith(attn[0] + "."))]
        if outside:
            return make(*outside[-1], "input")
    raise EigenscopeError(f"{bname} ({type(block).__name__}): no module found for site {site!r}")


def blocks_of(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """compression's find_blocks; until it knows GPT-2's Conv1D, the largest ModuleList whose
    children all hold a Linear-like module (Conv1D included) stands in."""
    blocks = find_blocks(model)
    if blocks:
        return blocks
    best = max(((sum(p.numel() for p in m.parameters()), n, m) for n, m in model.named_modules()
                if isinstance(m, nn.ModuleList) and len(m) and all(_linears(c) for c in m)),
               default=None, key=lambda t: t[0])
    return [] if best is None else [(f"{best[1]}.{i}", b) for i, b in enumerate(best[2])]


def find_sites(model: nn.Module, sites=None, *, layers=None) -> list[Site]:
    """The Site of every (layer, site) asked for, in model order. `layers`: indices to keep."""
    sites = resolve_sites(sites)
    blocks = blocks_of(model)
    if blocks:
        out = [_block_site(b, bn, i, s) for i, (bn, b) in enumerate(blocks) for s in sites]
    else:
        if sites != ("residual",):
            raise EigenscopeError(f"{type(model).__name__} has no repeated blocks: only the "
                                  "'residual' site (each Linear's output) exists")
        out = [Site(f"{n or 'model'}:residual", i, "residual", n, m, "output")
               for i, (n, m) in enumerate(_linears(model))]
    if layers is not None:
        keep = {int(x) for x in layers}
        out = [s for s in out if s.layer in keep]
    if not out:
        raise EigenscopeError(f"{type(model).__name__}: no site to read"
                              + (f" in layers {sorted(keep)}" if layers is not None else ""))
    return out


def _first_tensor(x):
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0]
    h = getattr(x, "last_hidden_state", None)
    return h if isinstance(h, torch.Tensor) else None


class SiteHooks:
    """Forward hooks calling fn(site, h) with each site's hidden states h (..., d), detached.

    A context manager: the hooks are removed on exit, also after an error."""

    def __init__(self, sites: list[Site], fn: Callable[[Site, torch.Tensor], None]):
        self.sites, self.fn, self.handles = sites, fn, []

    def _hook(self, site: Site):
        if site.where == "output":
            def hook(mod, args, out):
                h = _first_tensor(out)
                if h is not None:
                    self.fn(site, h.detach())
            return site.module.register_forward_hook(hook)

        def pre(mod, args, kwargs):
            h = _first_tensor(args) if args else kwargs.get("hidden_states")
            if h is not None:
                self.fn(site, h.detach())
        return site.module.register_forward_pre_hook(pre, with_kwargs=True)

    def __enter__(self):
        self.handles = [self._hook(s) for s in self.sites]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles = []
        return False

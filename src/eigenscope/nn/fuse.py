"""One `down` GEMM for the factorised Linears that read the same input (q/k/v, gate/up).

`fuse_lowrank_(model)` is an inference transform applied to a loaded or compressed model: each
group of sibling LowRankLinear with one input becomes FusedLowRankLinear members whose `down`
factors live in one concatenated (R, n) matrix, R = sum of the members' ranks. The first member
called computes x @ A_cat^T once; the others take their slice of it. Correctness never depends on
the grouping: a member whose input is not the tensor the group last saw recomputes the product.

The state dict keeps the unfused names (`<member>.down.weight`), so `eigenscope.save` writes the
same file as for the unfused model and `load_state_dict` of an unfused checkpoint works.

    >>> import torch
    >>> from torch import nn
    >>> from eigenscope.nn.lowrank import LowRankLinear
    >>> torch.manual_seed(0) and None
    >>> att = nn.Module()
    >>> att.q_proj, att.k_proj = (LowRankLinear.from_linear(nn.Linear(16, 16), rank=4) for _ in range(2))
    >>> x = torch.randn(2, 16)
    >>> before = att.q_proj(x), att.k_proj(x)
    >>> fuse_lowrank_(att)
    1
    >>> all(torch.allclose(a, b, atol=1e-6) for a, b in zip(before, (att.q_proj(x), att.k_proj(x))))
    True
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .lowrank import LowRankLinear, plain_linear
from .surgery import set_module

# sibling names that read one input in the usual transformer blocks (HF naming)
SHARED_INPUT = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"), ("query", "key", "value"),
                ("w1", "w3"), ("wq", "wk", "wv"))


class FusedLowRankLinear(LowRankLinear):
    """A LowRankLinear whose `down` factor is a row slice of a matrix shared with its siblings.

    The first member (`owner`) holds the concatenated Parameter `fused_down` (R, n) and a one-entry
    cache of x @ fused_down^T; `lo:hi` are this member's rows.
    """

    def __init__(self, member: LowRankLinear, owner: "FusedLowRankLinear | None", lo: int, hi: int,
                 fused: torch.Tensor | None = None):
        nn.Module.__init__(self)
        self.in_features, self.out_features, self.rank = member.in_features, member.out_features, member.rank
        self.up, self.lo, self.hi = member.up, lo, hi
        if owner is None:  # the group's first member owns the concatenated factor
            self.fused_down = nn.Parameter(fused, requires_grad=False)
            self.group_size, self._cache = 1, None
        self.__dict__["owner"] = self if owner is None else owner  # a reference, not a child module
        if owner is not None:
            owner.group_size += 1

    @property
    def down_weight(self) -> torch.Tensor:
        return self.owner.fused_down[self.lo:self.hi]  # (r, n)

    def _shared(self, x: torch.Tensor) -> torch.Tensor:
        """x @ A_cat^T, computed once per input tensor for the whole group."""
        o = self.owner
        c = o._cache
        if c is None or c[0] is not x or c[1] != x._version:
            h = F.linear(x, o.fused_down)                        # (.., R)
            c = o._cache = [x, x._version, h, o.group_size]
        c[3] -= 1
        if c[3] <= 0:  # every member has read it: release the activations
            o._cache = None
        return c[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            # a graph cannot hold the Python cache: each member multiplies by its own rows
            # (timed: compiled decoding was slower with the whole product per member)
            h = F.linear(x, self.down_weight)                    # (.., r)
        else:
            h = self._shared(x)[..., self.lo:self.hi]            # (.., r)
        if plain_linear(self.up):
            return F.linear(h, self.up.weight, self.up.bias)     # (.., m)
        return self.up(h)

    def dense_weight(self) -> torch.Tensor:
        return self.up.weight @ self.down_weight

    def to_dense(self) -> nn.Linear:
        return self.unfused().to_dense()

    def unfused(self) -> LowRankLinear:
        """A plain LowRankLinear with a copy of this member's factors."""
        up = self.up.weight
        mod = LowRankLinear(self.in_features, self.out_features, self.rank, bias=self.up.bias is not None,
                            device=up.device, dtype=up.dtype)
        mod.up = self.up
        with torch.no_grad():
            mod.down.weight.copy_(self.down_weight)
        return mod

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        # the unfused layout: `<prefix>down.weight` per member, never the concatenated matrix
        w = self.down_weight
        destination[prefix + "down.weight"] = w if keep_vars else w.detach().clone()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        key = prefix + "down.weight"
        if key not in state_dict:
            missing_keys.append(key)
            return
        src = state_dict[key]
        if tuple(src.shape) != (self.rank, self.in_features):
            error_msgs.append(f"{key}: shape {tuple(src.shape)} != {(self.rank, self.in_features)}")
            return
        with torch.no_grad():
            self.owner.fused_down[self.lo:self.hi].copy_(src)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", fused rows {self.lo}:{self.hi}"


def shared_input_groups(model: nn.Module) -> list[list[str]]:
    """Names of sibling LowRankLinear that read one input (SHARED_INPUT names, same in_features)."""
    groups = []
    for pname, parent in model.named_modules():
        kids = dict(parent.named_children())
        for names in SHARED_INPUT:
            found = [n for n in names if type(kids.get(n)) is LowRankLinear]
            if len(found) > 1 and len({kids[n].in_features for n in found}) == 1:
                groups.append([f"{pname}.{n}" if pname else n for n in found])
    return groups


def fuse_lowrank_(model: nn.Module, groups: list[list[str]] | None = None) -> int:
    """Fuse the `down` factors of each group (default: shared_input_groups) in place; return the
    number of groups fused. An inference transform: the fused factor does not train."""
    groups = shared_input_groups(model) if groups is None else groups
    for names in groups:
        mods = [model.get_submodule(n) for n in names]
        fused = torch.cat([m.down.weight.detach() for m in mods])   # (R, n)
        owner, lo = None, 0
        for name, mod in zip(names, mods):
            new = FusedLowRankLinear(mod, owner, lo, lo + mod.rank, fused if owner is None else None)
            owner, lo = owner or new, lo + mod.rank
            set_module(model, name, new)
    return len(groups)


def unfuse_lowrank_(model: nn.Module) -> int:
    """Undo fuse_lowrank_: every FusedLowRankLinear becomes a LowRankLinear; return how many."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, FusedLowRankLinear)]
    for name, mod in found:
        set_module(model, name, mod.unfused())
    return len(found)

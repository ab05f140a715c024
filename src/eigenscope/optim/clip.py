"""SpectralClip: clip the singular values of any optimiser's update to 2-D parameters (SPECTRA)."""
from __future__ import annotations

from collections import OrderedDict, defaultdict

import torch
from torch.utils.hooks import RemovableHandle

from eigenscope.linalg import hard_clip, soft_clip
from ..errors import ArgumentError


def _clip(U: torch.Tensor, c: float, mode: str) -> torch.Tensor:
    return soft_clip(U, c) if mode == "soft" else hard_clip(U, c)


def _batched(tensors: list[torch.Tensor], fn) -> list[torch.Tensor]:
    """Apply fn to same-shape tensors stacked into one (b, m, n) batch; original order."""
    by_shape: dict[tuple, list[int]] = defaultdict(list)
    for i, t in enumerate(tensors):
        by_shape[(tuple(t.shape), t.dtype, t.device)].append(i)
    out: list[torch.Tensor | None] = [None] * len(tensors)
    for idx in by_shape.values():
        res = fn(torch.stack([tensors[i] for i in idx]))           # (b, m, n)
        for j, i in enumerate(idx):
            out[i] = res[j]
    return out


class SpectralClip:
    """Wrap an optimiser so that the update of every 2-D parameter has singular values <= c.

    step(): snapshot the 2-D params p_old, run the base step, U = p_new - p_old (the whole
    update, weight decay included), then p = p_old + clip(U). mode "soft": H_c(U) = (I + U U^T /
    c^2)^(-1/2) U (each s -> s / sqrt(1 + s^2/c^2), Newton-Schulz, no SVD); "hard": min(s, c)
    by SVD. 1-D (and >2-D) parameters are left as the base optimiser made them.
    pre_clip: a float c' also soft-clips each 2-D gradient to c' before the base step (SPECTRA's
    optional gradient clip); None skips it. c is absolute: it bounds the per-step change of the
    spectral norm, so scale it with the learning rate (e.g. c = lr for AdamW-sized updates).

    Behaves like the base optimiser for zero_grad / param_groups / state / state_dict;
    register_step_post_hook hooks run after the clip.
    """

    def __init__(self, base_optimizer: torch.optim.Optimizer, c: float = 1e-2, *,
                 mode: str = "soft", pre_clip: float | None = None):
        if mode not in ("soft", "hard"):
            raise ArgumentError(f"mode must be 'soft' or 'hard', not {mode!r}")
        if not c > 0:
            raise ArgumentError(f"c must be positive, got {c}")
        self.base, self.c, self.mode, self.pre_clip = base_optimizer, float(c), mode, pre_clip
        self._post_hooks: OrderedDict = OrderedDict()

    # -- delegation -------------------------------------------------------------------
    @property
    def param_groups(self):
        return self.base.param_groups

    @property
    def state(self):
        return self.base.state

    @property
    def defaults(self):
        return self.base.defaults

    def zero_grad(self, set_to_none: bool = True):
        """The wrapped optimiser's zero_grad."""
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        """The wrapped optimiser's state dict (the clip itself holds no state)."""
        return self.base.state_dict()

    def load_state_dict(self, state_dict):
        """Load the wrapped optimiser's state."""
        self.base.load_state_dict(state_dict)

    def add_param_group(self, group):
        """Add a parameter group to the wrapped optimiser."""
        self.base.add_param_group(group)

    def register_step_post_hook(self, hook) -> RemovableHandle:
        """hook(optimizer, args, kwargs), called after the clipped step (torch's signature)."""
        handle = RemovableHandle(self._post_hooks)
        self._post_hooks[handle.id] = hook
        return handle

    def __repr__(self):
        return f"SpectralClip(c={self.c}, mode={self.mode!r}, pre_clip={self.pre_clip}, {self.base!r})"

    # -- the step ---------------------------------------------------------------------
    def _matrices(self) -> list[torch.Tensor]:
        return [p for g in self.base.param_groups for p in g["params"]
                if p.ndim == 2 and p.grad is not None]

    @torch.no_grad()
    def step(self, closure=None):
        """The wrapped optimiser's step, then each 2-D update replaced by its spectral clip."""
        params = self._matrices()
        if self.pre_clip is not None and params:
            grads = _batched([p.grad for p in params], lambda G: soft_clip(G, self.pre_clip))
            for p, g in zip(params, grads):
                p.grad.copy_(g)
        old = [p.detach().clone() for p in params]                 # p_old, (m, n) each
        loss = self.base.step(closure)
        if params:
            updates = [p - o for p, o in zip(params, old)]         # U = p_new - p_old
            clipped = _batched(updates, lambda U: _clip(U, self.c, self.mode))
            for p, o, u in zip(params, old, clipped):
                p.copy_(o + u)
        for hook in list(self._post_hooks.values()):
            hook(self, (), {})
        return loss

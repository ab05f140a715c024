"""QuantLinear: a Linear whose weight is stored as group-wise integer codes (8 or 4 bits), with an
optional low-rank correction  y = x W_q^T + (x A^T) B^T + b.

The codes, scales and zeros are buffers (uint8 / float16), so a save holds the small form; the
forward dequantizes the weight for each call (weight-only quantization buys bytes, not speed, on
CPUs without int8/int4 kernels for float activations).

    >>> from eigenscope.maths.quant import round_to_nearest
    >>> lin = torch.nn.Linear(64, 8)
    >>> q = QuantLinear.from_codes(*round_to_nearest(lin.weight.detach(), 8, 64), bits=8, bias=lin.bias)
    >>> float((q.dequantized_weight() - lin.weight.detach()).abs().max()) < 0.01
    True
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..maths.quant import dequantize, pack4, unpack4


class QuantLinear(nn.Module):
    """Weight-only quantized Linear (n -> m); `rank` > 0 adds the correction factors."""

    def __init__(self, in_features: int, out_features: int, *, bits: int, group: int, rank: int = 0,
                 bias: bool = True, dtype=torch.float32, device=None):
        super().__init__()
        if bits not in (4, 8) or in_features % group:
            raise ValueError(f"QuantLinear: bits {bits} / group {group} do not fit {in_features} inputs")
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group, self.rank, self.compute_dtype = bits, group, rank, dtype
        cols = (in_features + 1) // 2 if bits == 4 else in_features
        self.register_buffer("qweight", torch.zeros(out_features, cols, dtype=torch.uint8, device=device))
        for name in ("scale", "zero"):
            self.register_buffer(name, torch.zeros(out_features, in_features // group,
                                                   dtype=torch.float16, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device)) if bias else None
        if rank:  # float16 storage: the correction is small and its rounding far below the codes'
            self.corr_down = nn.Parameter(torch.zeros(rank, in_features, dtype=torch.float16, device=device))
            self.corr_up = nn.Parameter(torch.zeros(out_features, rank, dtype=torch.float16, device=device))

    @classmethod
    def from_codes(cls, q, scale, zero, *, bits: int, bias=None, correction=None, dtype=torch.float32):
        """From codes q (m, n) uint8, scale and zero (m, n/g); correction (B (m, r), A (r, n))."""
        m, n = q.shape
        rank = 0 if correction is None else correction[0].shape[1]
        mod = cls(n, m, bits=bits, group=n // scale.shape[1], rank=rank, bias=bias is not None,
                  dtype=dtype, device=q.device)
        with torch.no_grad():
            mod.qweight.copy_(pack4(q) if bits == 4 else q.to(torch.uint8))
            mod.scale.copy_(scale.to(torch.float16))
            mod.zero.copy_(zero.to(torch.float16))
            if bias is not None:
                mod.bias.copy_(bias.detach())
            if rank:
                mod.corr_up.copy_(correction[0])
                mod.corr_down.copy_(correction[1])
        return mod

    def codes(self) -> torch.Tensor:
        """The integer codes (out, in), unpacked from 4 bits where packed."""
        return unpack4(self.qweight, self.in_features) if self.bits == 4 else self.qweight

    def dequantized_weight(self) -> torch.Tensor:
        """W_q (m, n) in the compute dtype (without the correction)."""
        return dequantize(self.codes(), self.scale, self.zero, dtype=self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.dequantized_weight(), self.bias)      # (.., m)
        if self.rank:
            dt = self.compute_dtype
            y = y + F.linear(F.linear(x, self.corr_down.to(dt)), self.corr_up.to(dt))
        return y

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group={self.group}, rank={self.rank}")

    def spec(self) -> dict:
        """What `load` needs to rebuild an empty module before reading its tensors."""
        return dict(bits=self.bits, group=self.group, rank=self.rank, bias=self.bias is not None,
                    dtype=str(self.compute_dtype).replace("torch.", ""))


def model_nbytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer, tensors sharing storage counted once."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        key = (t.untyped_storage().data_ptr(), t.data_ptr(), t.numel())
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total

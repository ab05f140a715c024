"""LowRankConv2d: a (out, in, kh, kw) convolution W ~= B A as a kh x kw convolution to r channels
followed by a 1 x 1 convolution (W reshaped to (out, in * kh * kw), as analysis reads it)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ArgumentError


class LowRankConv2d(nn.Module):
    """y = up(down(x)): down is a kh x kw conv in -> r (the original stride, padding and
    dilation, no bias), up a 1 x 1 conv r -> out (the original bias).

    >>> conv = nn.Conv2d(3, 8, 3, padding=1)
    >>> low = LowRankConv2d.like(conv, rank=8)
    >>> tuple(low(torch.randn(1, 3, 5, 5)).shape)
    (1, 8, 5, 5)
    """

    def __init__(self, conv: nn.Conv2d, rank: int, *, device=None, dtype=None):
        super().__init__()
        if conv.groups != 1:
            raise ArgumentError("grouped convolutions are not factorised")
        self.in_channels, self.out_channels, self.rank = conv.in_channels, conv.out_channels, rank
        dev = device if device is not None else conv.weight.device
        dt = dtype if dtype is not None else conv.weight.dtype
        self.down = nn.Conv2d(conv.in_channels, rank, conv.kernel_size, stride=conv.stride,
                              padding=conv.padding, dilation=conv.dilation, bias=False,
                              padding_mode=conv.padding_mode, device=dev, dtype=dt)
        self.up = nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None,
                            device=dev, dtype=dt)

    @classmethod
    def like(cls, conv: nn.Conv2d, rank: int) -> "LowRankConv2d":
        """An (uninitialised) low-rank stand-in for `conv` (same device and dtype)."""
        return cls(conv, rank)

    @classmethod
    def from_factors(cls, conv: nn.Conv2d, B: torch.Tensor, A: torch.Tensor,
                     bias: torch.Tensor | None = None) -> "LowRankConv2d":
        """From B (out, r) and A (r, in * kh * kw): W' = B A reshaped like conv's weight."""
        mod = cls(conv, B.shape[1], device=A.device, dtype=A.dtype)
        with torch.no_grad():
            mod.down.weight.copy_(A.reshape(mod.down.weight.shape))   # (r, in, kh, kw)
            mod.up.weight.copy_(B[:, :, None, None])                  # (out, r, 1, 1)
            if bias is not None:
                mod.up.bias.copy_(bias)
        return mod

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))   # (b, in, H, W) -> (b, r, H', W') -> (b, out, H', W')

    def dense_weight(self) -> torch.Tensor:
        """The dense (out, in, kh, kw) weight this layer stands for."""
        A = self.down.weight.reshape(self.rank, -1)                    # (r, in * kh * kw)
        return (self.up.weight[:, :, 0, 0] @ A).reshape(self.out_channels, *self.down.weight.shape[1:])

    def to_dense(self) -> nn.Conv2d:
        """An nn.Conv2d with the dense weight and the bias (a copy)."""
        d = self.down
        conv = nn.Conv2d(self.in_channels, self.out_channels, d.kernel_size, stride=d.stride,
                         padding=d.padding, dilation=d.dilation, bias=self.up.bias is not None,
                         padding_mode=d.padding_mode, device=d.weight.device, dtype=d.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(self.dense_weight())
            if self.up.bias is not None:
                conv.bias.copy_(self.up.bias)
        return conv

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, rank={self.rank}"

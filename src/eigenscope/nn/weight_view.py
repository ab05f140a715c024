"""WeightView: the shape, dtype and device of a weight that is not stored densely.

Model code reads a Linear's weight for its metadata: T5's feed-forward casts its input to
`self.wo.weight.dtype`, other code asks `.weight.device` or `.weight.shape`. A LowRankLinear
stores W = up @ down as two factors; building the dense (out, in) matrix on every forward only
to read its dtype would undo the compression. A WeightView is a tensor without storage (a
wrapper subclass) that answers shape, dtype, device, ndim, size() and isinstance(x, Tensor), and
raises one clear EigenscopeError on anything that needs values (arithmetic, indexing, copies,
printing the values): silently wrong numbers are worse than a stop.

    >>> import torch
    >>> w = WeightView((6, 8), dtype=torch.float16, device="cpu")
    >>> w.shape, w.dtype, w.device.type, isinstance(w, torch.Tensor)
    (torch.Size([6, 8]), torch.float16, 'cpu', True)
    >>> w + 1
    Traceback (most recent call last):
    ...
    eigenscope.errors.EigenscopeError: LowRankLinear.weight (6x8) has no values (aten.add.Tensor): it is stored as two factors; use .dense_weight(), or .up.weight and .down.weight
"""
from __future__ import annotations

import torch

from ..errors import EigenscopeError


class WeightView(torch.Tensor):
    """A storage-less (out, in) tensor with the factors' dtype and device (module docstring)."""

    @staticmethod
    def __new__(cls, shape, *, dtype, device):
        return torch.Tensor._make_wrapper_subclass(cls, tuple(shape), dtype=dtype,
                                                   device=torch.device(device), requires_grad=False)

    # no torch-function wrapping: every op goes to __torch_dispatch__, which refuses it
    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        shape = next((a.shape for a in args if isinstance(a, WeightView)), ())
        raise EigenscopeError(f"LowRankLinear.weight ({'x'.join(map(str, shape))}) has no values "
                              f"({func}): it is stored as two factors; use .dense_weight(), or "
                              ".up.weight and .down.weight")

    def numpy(self, *args, **kwargs):
        """Refused like every other use of values (torch's own message would not say why)."""
        self.__torch_dispatch__("numpy", (), (self,))

    def __repr__(self):
        return (f"WeightView(shape={tuple(self.shape)}, dtype={self.dtype}, "
                f"device={self.device}: stored as two factors)")

    def __reduce_ex__(self, protocol):
        raise EigenscopeError("LowRankLinear.weight has no values to pickle or deepcopy; "
                              "its module's state_dict holds the factors")

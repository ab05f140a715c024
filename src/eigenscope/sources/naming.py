"""One naming per model: a module's parameters under the names its checkpoint stores them by.

transformers 5 renames weights when it loads a checkpoint and reverts the renaming when it saves
one (Mixtral's per-expert `block_sparse_moe.experts.3.w1.weight` become slices of one fused 3-D
`mlp.experts.gate_up_proj`, GPT-NeoX's `embed_out` becomes `lm_head`, ViT's
`encoder.layer.0.attention.attention.query` becomes `layers.0.attention.q_proj` ...). Rows of a
model must not depend on the form it comes in, so the on-disk (checkpoint) names are canonical,
and a module is read under them.

Nothing is re-typed per architecture: `checkpoint_map` runs transformers' own save path
(`remove_tied_weights_from_state_dict`, then `revert_weight_conversion`, the exact functions
`save_pretrained` calls) on weightless meta-device copies of the state dict. The reverse
conversions only split, chunk, transpose and rename, but they finish each piece with
`.contiguous()`; that call is made a no-op while the map is built, so every checkpoint tensor
comes back as a *view* of one parameter, and its (shape, stride, offset) say exactly where it
lives. A conversion that really computes (concatenating several parameters into one stored
tensor) yields a piece without a view (`Piece.stride is None`).

    >>> import torch
    >>> cmap = checkpoint_map(torch.nn.Linear(3, 2))
    >>> [(p.checkpoint, p.parameter, p.shape) for p in cmap.pieces]
    [('weight', 'weight', (2, 3)), ('bias', 'bias', (2,))]

Filling a weightless skeleton from checkpoint files (one parameter at a time)::

    cmap = checkpoint_map(config)                 # or checkpoint_map(meta_model)
    for name in cmap.parameters():                # or only the names of one block
        out = torch.empty(shape_of[name], dtype=...)  # contiguous, the parameter's shape
        cmap.fill(name, out, read)                # read(checkpoint_name) -> tensor
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..errors import EigenscopeError
from .base import error_line


@dataclass(frozen=True)
class Piece:
    """One checkpoint tensor and the parameter it is stored in.

    checkpoint -- its name in the checkpoint file ("model.layers.0.block_sparse_moe.experts.3.w1.weight")
    parameter  -- the module's parameter (or buffer) holding it ("model.layers.0.mlp.experts.gate_up_proj")
    shape      -- its shape in the file
    stride, offset -- the checkpoint tensor is `contiguous_param.as_strided(shape, stride, offset)`;
                  stride None: not a view (transformers computes it from several parameters)
    whole      -- it is the parameter itself (a plain rename or no change at all)
    """

    checkpoint: str
    parameter: str
    shape: tuple[int, ...]
    stride: tuple[int, ...] | None
    offset: int = 0
    whole: bool = False

    def view(self, param: torch.Tensor) -> torch.Tensor:
        """This checkpoint tensor as a view into `param` (zero copy when `param` is contiguous)."""
        if self.stride is None:
            raise EigenscopeError(f"checkpoint tensor {self.checkpoint} is computed from several "
                                  f"parameters by transformers; it is not a view of {self.parameter}")
        if self.whole:
            return param
        base = param if param.is_contiguous() else param.contiguous()
        return base.as_strided(self.shape, self.stride, base.storage_offset() + self.offset)


@dataclass(frozen=True)
class CheckpointMap:
    """Which checkpoint tensors make which module parameter (see the module docstring).

    pieces -- every stored tensor, in checkpoint order
    tied   -- parameters the checkpoint does not store: {parameter: parameter it is tied to}
              (restored by the model's own `tie_weights()`)
    """

    pieces: tuple[Piece, ...]
    tied: dict = field(default_factory=dict)

    def parameters(self) -> list[str]:
        """Parameter (and buffer) names the checkpoint stores, each once, in checkpoint order."""
        return list(dict.fromkeys(p.parameter for p in self.pieces))

    def pieces_of(self, parameter: str) -> list[Piece]:
        """The checkpoint tensors stored in `parameter` (several for fused experts or gate_up)."""
        return [p for p in self.pieces if p.parameter == parameter]

    def checkpoint_names(self, parameter: str) -> list[str]:
        """Names of the checkpoint tensors stored in `parameter`."""
        return [p.checkpoint for p in self.pieces_of(parameter)]

    def fill(self, parameter: str, out: torch.Tensor, read: Callable[[str], torch.Tensor]) -> torch.Tensor:
        """Copy every checkpoint tensor of `parameter` (`read(checkpoint_name)`) into its place
        in `out` (a contiguous tensor of the parameter's shape); returns `out`."""
        pieces = self.pieces_of(parameter)
        if not pieces:
            raise EigenscopeError(f"{parameter}: not stored in the checkpoint"
                                  + (f" (tied to {self.tied[parameter]})" if parameter in self.tied else ""))
        if not out.is_contiguous():
            raise EigenscopeError(f"{parameter}: fill needs a contiguous output tensor")
        with torch.no_grad():
            for p in pieces:
                src = read(p.checkpoint)
                if tuple(src.shape) != p.shape:
                    raise EigenscopeError(f"checkpoint tensor {p.checkpoint} has shape "
                                          f"{tuple(src.shape)}, expected {p.shape}")
                p.view(out).copy_(src)
        return out


def checkpoint_map(model) -> CheckpointMap:
    """The `CheckpointMap` of an nn.Module (weights may be on any device, meta included) or of a
    transformers config (a weightless model of the class `sources.skeleton.model_class` picks is
    built on the meta device). Modules that are not transformers models map every parameter to
    itself; tied parameters are stored once, as in `save_pretrained`."""
    if not isinstance(model, nn.Module):
        model = _meta_model(model)
    real = model.state_dict(keep_vars=True)
    for key in getattr(model, "_keys_to_ignore_on_save", None) or ():
        real.pop(key, None)
    meta = {k: torch.empty(tuple(v.shape), dtype=v.dtype, device="meta") for k, v in real.items()}
    kept = _untie(model, meta, real)
    tied = {k: kept[k] for k in meta if kept.get(k, k) != k}
    stored = {k: meta[k] for k in meta if k not in tied}
    out = _revert(model, stored)
    owner = {id(t): k for k, t in stored.items()}
    return CheckpointMap(tuple(_piece(name, t, owner) for name, t in out.items()), tied)


def _piece(name: str, t: torch.Tensor, owner: dict) -> Piece:
    base = t if t._base is None else t._base
    param = owner.get(id(base))
    if param is None:  # computed by a conversion (e.g. torch.cat of several parameters)
        return Piece(name, "", tuple(t.shape), None)
    return Piece(name, param, tuple(t.shape), tuple(t.stride()), t.storage_offset(),
                 whole=t is base)


def _untie(model: nn.Module, meta: dict, real: dict) -> dict:
    """{name: the name kept for its storage}. transformers models keep the name their own
    save_pretrained keeps; anything else sharing memory keeps its first name."""
    removed = set(meta)
    try:
        from transformers.modeling_utils import PreTrainedModel, remove_tied_weights_from_state_dict
        if isinstance(model, PreTrainedModel):
            removed -= set(remove_tied_weights_from_state_dict(dict(meta), model))
        else:
            removed = set()
    except (ImportError, RuntimeError):  # no transformers, or ties it does not know about
        removed = set()
    kept, first = {}, {}
    for name in meta:       # non-removed names first claim their storage
        if name not in removed:
            kept[name] = first.setdefault(_storage_key(real[name]), name)
    for name in meta:
        if name in removed:
            kept[name] = first.get(_storage_key(real[name]), name)
    return kept


def _storage_key(p: torch.Tensor):
    """Same memory, same view: two tensors tied by sharing storage (not only `is`)."""
    if p.device.type == "meta":
        return id(p)
    return (p.untyped_storage().data_ptr(), p.storage_offset(), tuple(p.shape), tuple(p.stride()))


def _revert(model: nn.Module, stored: dict) -> dict:
    """transformers' own load-time conversions reverted (what save_pretrained writes), on meta
    tensors, with `.contiguous()` a no-op so that pieces stay views of their parameter."""
    try:
        from transformers.core_model_loading import revert_weight_conversion
        from transformers.modeling_utils import PreTrainedModel
    except ImportError:
        return dict(stored)
    if not isinstance(model, PreTrainedModel):
        return dict(stored)
    try:
        with _KeepViews():
            return dict(revert_weight_conversion(model, dict(stored)))
    except Exception as e:  # e.g. quantized weights transformers itself cannot revert
        warnings.warn(f"{type(model).__name__}: transformers cannot revert its weight "
                      f"conversions ({error_line(e)}); its tensors keep the module's names")
        return dict(stored)


class _KeepViews(torch.overrides.TorchFunctionMode):
    """`.contiguous()` returns the tensor itself, so a chunk of a parameter stays its view."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.contiguous:
            return args[0]
        return func(*args, **(kwargs or {}))


def _meta_model(config) -> nn.Module:
    """A weightless model of `config` (the class `skeleton.model_class` picks)."""
    from .skeleton import model_class, saved_class_name

    if not hasattr(config, "model_type"):
        raise EigenscopeError(f"checkpoint_map needs an nn.Module or a transformers config, "
                              f"not a {type(config).__name__}")
    cls = model_class(config, saved_class_name(config))
    with torch.device("meta"):
        return cls._from_config(config)


"""Weight-only quantization of a (compressed) model, with an optional low-rank error correction.

`quantize_(model, bits=4)` replaces every targeted nn.Linear — the dense Linears left and the
`down` / `up` factors of each LowRankLinear — by a QuantLinear whose codes come from a library
backend: "hqq" (Half-Quadratic Quantization: zeros and scales fitted by a proximal solver,
data-free), "torchao" (its affine min-max primitives) or "rtn" (eigenscope's own min-max, the
reference). With `rank=r` each dense Linear also gets the rank-r correction of its quantization
error that minimises the output error on the calibration inputs (QERA's closed form, whitened
as in `whiten`; maths.quant.qera_factors).

Saving: `eigenscope.save` stores the codes, scales and zeros as safetensors tensors and the
per-module spec (bits, group, rank) under the metadata key "quant"; `eigenscope.load` rebuilds
the QuantLinear modules from it (`quant_metadata` / `restore_quant`, called by io.py).

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    >>> quantize_(net, bits=8, backend="rtn")
    2
    >>> type(net[0]).__name__, net[0].bits
    ('QuantLinear', 8)
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import EigenscopeError
from ..maths.quant import qera_factors, round_to_nearest
from ..nn.lowrank import LowRankLinear
from ..nn.quant import QuantLinear

BACKENDS = ("hqq", "torchao", "rtn")
META_KEY = "quant"


@dataclass(frozen=True)
class QuantConfig:
    """bits 8 or 4; group: inputs sharing a scale (None: the whole row, per channel);
    backend: one of BACKENDS; rank: correction rank of each dense Linear (0: none)."""

    bits: int = 4
    group: int | None = 64
    backend: str = "hqq"
    rank: int = 0

    def check(self) -> None:
        """Fail with one line on bits or backend out of their allowed values."""
        if self.bits not in (4, 8):
            raise EigenscopeError(f"quantize: bits {self.bits!r} must be 8 or 4")
        if self.backend not in BACKENDS:
            raise EigenscopeError(f"quantize: backend {self.backend!r}; choose from {', '.join(BACKENDS)}")
        if self.group is not None and (self.group < 2 or self.group % 2):
            raise EigenscopeError(f"quantize: group {self.group!r} must be an even int >= 2 or None")
        if not isinstance(self.rank, int) or self.rank < 0:
            raise EigenscopeError(f"quantize: rank {self.rank!r} must be an int >= 0")


def _library(backend: str, module: str):
    """The backend's module, or a one-line error saying which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EigenscopeError(f"quantize: backend {backend!r} needs the {backend} package "
                              f"(pip install 'eigenscope[quant]'), or use backend='rtn' ({exc})") from None


def codes(W: torch.Tensor, bits: int, group: int, backend: str):
    """(q (m, n) uint8, scale (m, n/g), zero (m, n/g)) with W ~= (q - zero) * scale."""
    m, n = W.shape
    if backend == "rtn":
        return round_to_nearest(W, bits, group)
    if backend == "hqq":
        Quantizer = _library("hqq", "hqq.core.quantize").Quantizer
        q, meta = Quantizer.quantize(W.float(), nbits=bits, group_size=group, optimize=True, axis=1,
                                     bitpack=False, compute_dtype=torch.float32, device=str(W.device))
        # HQQ groups rows of the flattened weight: (m n / g, g) -> (m, n)
        return (q.reshape(m, n).to(torch.uint8), meta["scale"].reshape(m, n // group),
                meta["zero"].reshape(m, n // group))
    prim = _library("torchao", "torchao.quantization.quant_primitives")
    MappingType, choose_qparams_affine, quantize_affine = \
        prim.MappingType, prim.choose_qparams_affine, prim.quantize_affine
    top = 2 ** bits - 1
    scale, zp = choose_qparams_affine(W.float(), MappingType.ASYMMETRIC, (1, group), torch.uint8, 0, top)
    q = quantize_affine(W.float(), (1, group), scale, zp, torch.uint8, 0, top)
    return q.to(torch.uint8), scale.reshape(m, n // group), zp.reshape(m, n // group).float()


def quantize_(model: nn.Module, *, bits: int = 4, group: int | None = 64, backend: str = "hqq",
              rank: int = 0, stats: dict | None = None, layers: str | None = None,
              progress: bool = False) -> int:
    """Quantize every targeted Linear in place (see the module doc); return how many.

    stats  -- calibration statistics {Linear name: LayerStats} (from
              `compression.hooks.gram_statistics(model, inputs)`), needed when rank > 0: the
              correction minimises the error on those inputs
    layers -- regex on Linear names (default: every Linear in the repeated blocks, factors included)
    """
    from .._progress import track
    from ..nn.surgery import set_module
    from .targets import target_linears

    cfg = QuantConfig(bits, group, backend, rank)
    cfg.check()
    targets = {n: m for n, m in target_linears(model, layers).items() if isinstance(m, nn.Linear)}
    factors = {f"{n}.{c}" for n, m in model.named_modules() if isinstance(m, LowRankLinear)
               for c in ("down", "up")}
    for name, lin in track(list(targets.items()), "quantize", unit="layer", enabled=progress):
        new = quantize_linear(lin, cfg, (stats or {}).get(name), name, correct=name not in factors)
        set_module(model, name, new)
    return len(targets)


def quantize_linear(lin: nn.Linear, cfg: QuantConfig, st=None, name: str = "", *,
                    correct: bool = True) -> QuantLinear:
    """One Linear -> QuantLinear, with the QERA correction where cfg.rank > 0 and `correct`
    (quantize_ passes False for the factors of a LowRankLinear: they have no statistics)."""
    W = lin.weight.detach()
    m, n = W.shape
    g = fit_group(n, cfg.group)
    q, scale, zero = codes(W, cfg.bits, g, cfg.backend)
    corr = None
    if cfg.rank and correct:
        if st is None or st.gram is None:
            raise EigenscopeError(f"{name}: a correction rank needs calibration statistics (stats=)")
        from ..maths.quant import dequantize
        W_q = dequantize(q, scale.half(), zero.half(), dtype=torch.float64)  # as stored
        r = min(cfg.rank, m, n)
        B, A = qera_factors(W, W_q, st.require("gram", name), r, d_out=st.d_out)
        corr = (B.to(W.dtype), A.to(W.dtype))
    return QuantLinear.from_codes(q, scale, zero, bits=cfg.bits, bias=lin.bias, correction=corr,
                                  dtype=W.dtype)


def fit_group(n: int, group: int | None) -> int:
    """The group size used for n inputs: `group` if it divides n, else the largest divisor of n
    below it (factor ranks such as 200 take 50 for 64), else the whole row (no small groups
    whose scales would cost more than they save)."""
    if group is None or group >= n:
        return n
    d = max(k for k in range(1, group + 1) if n % k == 0)
    return d if 2 * d >= group else n


def quant_metadata(model: nn.Module) -> dict:
    """{"quant": JSON {module: spec}} for the safetensors metadata, or {} when nothing is quantized."""
    specs = {n: m.spec() for n, m in model.named_modules() if isinstance(m, QuantLinear)}
    return {META_KEY: json.dumps(specs)} if specs else {}


def restore_quant(model: nn.Module, meta: dict, where: str = "") -> None:
    """Swap in empty QuantLinear modules where the metadata says, before the tensors load."""
    from ..nn.surgery import set_module

    for name, spec in json.loads(meta.get(META_KEY, "{}")).items():
        try:
            old = model.get_submodule(name)
        except AttributeError:
            raise EigenscopeError(f"{where}: quantized module {name} not in the architecture") from None
        set_module(model, name, QuantLinear(old.in_features, old.out_features, bits=spec["bits"],
                                            group=spec["group"], rank=spec["rank"], bias=spec["bias"],
                                            dtype=getattr(torch, spec["dtype"])))

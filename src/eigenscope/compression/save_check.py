"""Everything the metadata of a save says is checked here, before any weight is allocated.

A save is safetensors shards and an index (or one file) whose metadata holds JSON strings:
`ranks` {module: rank}, `tied` {alias: kept tensor}, `plan`, `hf_config` and `hf_class`. A
tampered file could ask for any class, any module, any shape (a shape asked for 256 TiB once),
so `check_save` accepts it only when:
- every JSON field is within its size and nesting bounds and of the expected type;
- the config rebuilds through the allow-list (sources/skeleton.py: no `auto_map`, no remote
  code, known classes only), its layer / expert counts are no larger than the file's tensors
  could hold, and the model it describes, built on the meta device (no memory), needs at most
  a few times the files' bytes in buffers (parameters come from the files, shape-checked one
  by one as `compression.io.load` reads them: they can never exceed the files).
Only then does `compression.io.load` build the weightless skeleton and read the tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .._json import loads_bounded
from ..errors import SourceError

FIELD_MAX_BYTES = {"ranks": 16 * 2**20, "tied": 16 * 2**20, "hf_config": 16 * 2**20,
                   "plan": 64 * 2**20}
DTYPES = ("float32", "float16", "bfloat16", "float64")
# the model may need this many times the file's bytes (dtype changes, buffers), plus SLACK
BYTES_FACTOR, SLACK_BYTES = 4, 256 * 2**20
# config counts that build one module each: no larger than the file's tensors could fill
# (layers) or than any real model has (experts, which may be fused into one tensor)
LAYER_KEYS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers", "encoder_layers",
              "decoder_layers", "num_encoder_layers", "num_decoder_layers")
EXPERT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
MAX_EXPERTS = 4096


@dataclass
class SaveSpec:
    """What a checked save holds: ranks, tied aliases, and (HF saves) the config, class and dtype."""
    ranks: dict = field(default_factory=dict)
    tied: dict = field(default_factory=dict)
    config: object = None
    cls: type | None = None
    dtype: torch.dtype = torch.float32


def check_save(f: Path, meta: dict, shapes: dict, *, model: nn.Module | None = None,
               file_bytes: int) -> SaveSpec:
    """Validate a save's metadata given the tensors its files hold ({tensor: shape}, from the
    headers) and their bytes, and the model it describes (`model`, or one built on the meta
    device from the config). Raises SourceError naming the save and what is wrong; allocates
    nothing."""
    spec = SaveSpec(ranks=_ranks(f, meta), tied=_tied(f, meta))
    if "plan" in meta:
        _field(f, meta, "plan", list)
    if not shapes:
        raise SourceError(f"{f}: the save holds no tensors")
    if model is None:
        spec.config, spec.cls, spec.dtype = _hf_class(f, meta, len(shapes))
        model = _meta_skeleton(f, spec)
        _check_buffers(f, model, file_bytes)
    _compare(f, model, spec, shapes)
    return spec


def file_shapes(f: Path) -> dict:
    """{tensor: shape} from a safetensors file's header (no data read)."""
    from safetensors import safe_open

    from ..sources.safetensors_file import check_header

    check_header(Path(f))
    try:
        with safe_open(str(f), framework="pt") as h:
            return {k: tuple(h.get_slice(k).get_shape()) for k in h.keys()}
    except BaseException as e:  # safetensors' own parse (a Rust panic is a BaseException)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise SourceError(f"{f}: cannot read the safetensors header ({type(e).__name__})") from None


def _field(f, meta, key: str, kind: type):
    value = loads_bounded(meta[key], what=f"{f}: metadata {key!r}",
                          max_bytes=FIELD_MAX_BYTES.get(key, 2**20))
    if not isinstance(value, kind):
        raise SourceError(f"{f}: metadata {key!r} is not a JSON {kind.__name__}")
    return value


def _ranks(f, meta) -> dict:
    if "ranks" not in meta:
        raise SourceError(f"{f}: metadata has no 'ranks'")
    ranks = _field(f, meta, "ranks", dict)
    for name, r in ranks.items():
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise SourceError(f"{f}: rank of {name[:80]!r} is {str(r)[:40]}; ranks are integers >= 1")
    return ranks


def _tied(f, meta) -> dict:
    tied = _field(f, meta, "tied", dict) if "tied" in meta else {}
    if not all(isinstance(v, str) for v in tied.values()):
        raise SourceError(f"{f}: metadata 'tied' maps names to names")
    return tied


def _hf_class(f, meta, n_tensors: int):
    from ..sources.skeleton import config_from_dict, model_class

    if "hf_config" not in meta:
        raise SourceError(f"{f}: not a Hugging Face model; pass load(path, model=skeleton)")
    cfg = _field(f, meta, "hf_config", dict)
    dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32").replace("torch.", "")
    if dtype not in DTYPES:
        raise SourceError(f"{f}: saved dtype {dtype[:40]!r} is not one of {', '.join(DTYPES)}")
    for key, value in _int_items(cfg):
        most = max(n_tensors, 1) if key in LAYER_KEYS else MAX_EXPERTS if key in EXPERT_KEYS else None
        if most is not None and value > most:
            raise SourceError(f"{f}: the saved config asks for {key} = {value:,}, more than "
                              f"{most:,} (the file holds {n_tensors} tensors)")
    try:
        config = config_from_dict(cfg)
    except SourceError as e:
        raise SourceError(f"{f}: {e}") from None
    name = meta.get("hf_class")
    try:
        cls = model_class(config, name if isinstance(name, str) else None)
    except SourceError as e:
        raise SourceError(f"{f}: {e}") from None
    return config, cls, getattr(torch, dtype)


def _int_items(cfg: dict):
    """(key, int value) of a config dict and its nested dicts (sub-configs)."""
    stack = [cfg]
    while stack:
        d = stack.pop()
        for k, v in d.items():
            if isinstance(v, dict):
                stack.append(v)
            elif isinstance(v, int) and not isinstance(v, bool):
                yield str(k), v


def _meta_skeleton(f, spec: SaveSpec) -> nn.Module:
    """The described model on the meta device: every shape, no memory."""
    from ..sources.skeleton import meta_model

    try:
        return meta_model(spec.cls, spec.config, spec.dtype)
    except SourceError as e:
        raise SourceError(f"{f}: {e}") from None


def _compare(f, model: nn.Module, spec: SaveSpec, shapes: dict) -> None:
    """Every tensor of the file that the model has (compressed layers aside) has the model's
    shape, and every tied alias points to a tensor of its own shape: a config asking for other
    sizes (a 2^40-token vocabulary) is refused before the model is built."""
    ranked = tuple(f"{n}." for n in spec.ranks)
    for name, t in model.state_dict(keep_vars=True).items():
        if name.startswith(ranked):
            continue
        want, kept = tuple(t.shape), spec.tied.get(name)
        if name in shapes and tuple(shapes[name]) != want:
            raise SourceError(f"{f}: tensor {name[:80]} has shape {tuple(shapes[name])}; the "
                              f"model needs {want}")
        if name not in shapes and kept is not None and tuple(shapes.get(kept, ())) != want:
            raise SourceError(f"{f}: tied tensor {name[:80]} points to {kept[:80]!r}, which the "
                              "file does not hold in that shape")


def _check_buffers(f, model: nn.Module, file_bytes: int) -> None:
    """Buffers are built with the model, not read: a config could ask for any size of them."""
    need = sum(_numel(b.shape) * b.element_size() for b in model.buffers())
    if need > BYTES_FACTOR * file_bytes + SLACK_BYTES:
        raise SourceError(f"{f}: the saved model would need {need / 2**30:,.1f} GiB of buffers "
                          f"for a save of {file_bytes / 2**30:,.2f} GiB; refusing to allocate it")


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n

"""Sequential onloading (llm-compressor's idea): which parts of a model are in memory.

The pipeline asks for the "frame" (everything outside the repeated blocks: embeddings, final
norm, head) or one block at a time, and gives each back when done. `InMemory` is a model already
in memory (nothing moves). `FromSource` is a model on disk: a weightless skeleton built from its
config, whose parts are read from the files when asked for and put back on the meta device after.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import SourceError
from ..sources.naming import checkpoint_map
from ..sources.skeleton import Filler, build


class InMemory:
    """A model fully in memory: onloading does nothing."""

    def __init__(self, model: nn.Module):
        self.model, self.tokenizer, self.source_dtype = model, None, None

    def load(self, part) -> None:
        """Bring `part` ("frame" or a block name) into memory (nothing to do here)."""

    def unload(self, part, *, keep: bool = False) -> None:
        """Give `part` back (nothing to do here)."""

    def close(self) -> None:
        """Release the source (nothing to do here)."""


class FromSource:
    """A model on disk (Hugging Face folder, sharded or not, or GGUF), onloaded part by part.

    path    -- the folder (with config.json) or the .gguf file
    dtype   -- the dtype parts are computed in (tensors are upcast when read)
    """

    def __init__(self, path, *, dtype=torch.float32):
        from ..sources import open_source

        self.path, self.dtype = Path(path), dtype
        config, self.tokenizer = _config_and_tokenizer(self.path)
        self.model = build(config, dtype=dtype)
        self.filler = Filler(self.model)
        self.cmap = checkpoint_map(self.model)   # module names <-> the checkpoint's own
        self.source = open_source(self.path)
        self.infos = {i.name: i for i in self.source.tensors()}
        self.source_dtype = _common_dtype(self.infos.values())
        self.blocks: list[str] = []

    def set_blocks(self, names: list[str]) -> None:
        """The block names (module prefixes); the frame is every parameter outside them."""
        self.blocks = list(names)

    def _names(self, part) -> list[str]:
        """Parameter names of a part: a block, the "frame" (all outside the blocks), or the
        frame without the output head ("frame-in", to run up to block 0) or without the input
        embedding ("frame-out", for the top: the head gets dummy inputs_embeds)."""
        if part not in ("frame", "frame-in", "frame-out"):
            return self.filler.names([part])
        names = self.filler.names(exclude=self.blocks)
        skip = _embedding_params(self.model, "out" if part == "frame-in" else "in") \
            if part != "frame" else set()
        return [n for n in names if id(self.filler.get(n)) not in skip or n in self._shared()]

    def _shared(self) -> set[str]:
        """Names of parameters that are both input and output embedding (tied heads)."""
        both = _embedding_params(self.model, "in") & _embedding_params(self.model, "out")
        return {n for n in self.filler.names(exclude=self.blocks) if id(self.filler.get(n)) in both}

    def load(self, part) -> None:
        """Read `part`'s parameters from the files into the skeleton."""
        for name in self._names(part):
            self.filler.set(name, self._read(name))

    def unload(self, part, *, keep: bool = False) -> None:
        """Put `part` back on the meta device, unless `keep` (the caller wants it in memory).
        Modules put into a block since it was loaded (compressed layers) go back too."""
        if keep:
            return
        self.filler.release(self._names(part))
        if not part.startswith("frame"):
            for mod in self.model.get_submodule(part).modules():
                for leaf, p in mod._parameters.items():
                    if p is not None and p.device.type != "meta":
                        mod._parameters[leaf] = nn.Parameter(
                            torch.empty(p.shape, dtype=p.dtype, device="meta"), requires_grad=False)

    def _read(self, name: str) -> torch.Tensor:
        """Parameter `name` (or a name tied to it) from its checkpoint tensors, in self.dtype:
        one stored tensor, or several (fused experts) copied into their places."""
        canon = next((n for n in self.filler.aliases[name] if self.cmap.pieces_of(n)), None)
        if canon is None:
            raise SourceError(f"{self.path}: tensor {name} is missing from the model's files "
                              "(config.json names a layer the weights do not have)")
        for piece in self.cmap.pieces_of(canon):
            info = self.infos.get(piece.checkpoint)
            if info is None:
                raise SourceError(f"{self.path}: tensor {piece.checkpoint} is missing from the "
                                  "model's files (config.json names a layer the weights do not have)")
            if tuple(info.shape) != piece.shape:
                raise SourceError(f"{self.path}: tensor {piece.checkpoint} has shape "
                                  f"{tuple(info.shape)}, config.json implies {piece.shape}")
        out = torch.empty(self.filler.shape(name), dtype=self.dtype)
        return self.cmap.fill(canon, out, lambda c: self.source.read(c).to(self.dtype))

    def close(self) -> None:
        """Close the files."""
        self.source.close()


def _embedding_params(model: nn.Module, side: str) -> set[int]:
    """ids of the parameters of a transformers model's input ("in") or output ("out") embedding."""
    get = getattr(model, "get_input_embeddings" if side == "in" else "get_output_embeddings", None)
    try:
        mod = get() if get is not None else None
    except (NotImplementedError, AttributeError):
        mod = None
    return {id(p) for p in mod.parameters()} if isinstance(mod, nn.Module) else set()


def _config_and_tokenizer(path: Path):
    import transformers as tf

    from ..sources.hf_folder import read_config
    from ..sources.skeleton import config_from_dict

    kw = {}
    if path.suffix == ".gguf":
        path, kw = path.parent, {"gguf_file": path.name}
    elif not (path / "config.json").is_file():
        raise SourceError(f"{path}: compressing from disk needs a config.json beside the weights "
                          "(a Hugging Face folder) or a .gguf file")
    try:
        if kw:
            config = tf.AutoConfig.from_pretrained(path, trust_remote_code=False, **kw)
        else:   # our bounded reader, and the allow-listed rebuild (no auto_map, no kernels)
            config = config_from_dict(read_config(path))
    except SourceError as e:
        raise SourceError(f"{path / 'config.json'}: {e}") from None
    except (OSError, ValueError) as e:
        raise SourceError(f"{path}: cannot read the model's config ({str(e).splitlines()[0]})") from None
    if hasattr(config, "quantization_config"):
        del config.quantization_config   # GGUF: the file's quantisation is not the model's
    try:
        tok = tf.AutoTokenizer.from_pretrained(path, trust_remote_code=False, **kw)
    except (OSError, ValueError, TypeError):
        tok = None
    return config, tok


def _common_dtype(infos) -> torch.dtype:
    """The floating dtype most of the model is stored in (bf16/fp16/fp32), else float32."""
    counts: dict[str, int] = {}
    for i in infos:
        n = 1
        for d in i.shape:
            n *= d
        counts[i.dtype] = counts.get(i.dtype, 0) + n
    top = max(counts, key=counts.get) if counts else "float32"
    return getattr(torch, top) if top in ("float16", "bfloat16", "float32") else torch.float32

"""Load a whole model and its tokenizer from a source spec (for evaluate, and compress in memory).

Accepted: an nn.Module (passed through, tokenizer None); a built-in name (smollm2-135m,
minilm-l6); a Hugging Face folder (config.json); a .gguf file or a folder holding one
(dequantised to float32); a folder or .safetensors written by `eigenscope.save`.
The format is decided by `sources.formats.detect`, as for `open_source`.
"""
from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from .errors import EigenscopeError
from .sources.formats import detect, locate
from .sources.skeleton import model_class, saved_class_name


def load_model(source, *, dtype="float32"):
    """(model in eval mode, tokenizer or None)."""
    if isinstance(source, nn.Module):
        return source, None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = locate(source)
    kind = detect(path)
    if kind == "save":
        from .compression.io import load
        return load(path), _tokenizer(path if path.is_dir() else path.parent)
    if kind == "hf" and path.is_dir() and not (path / "config.json").exists():
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs:
            path, kind = ggufs[0], "gguf"
    if kind == "gguf":
        _check_gguf(path)
        return _load_hf(path.parent, dtype, gguf_file=path.name)
    if kind == "hf" and path.is_dir() and (path / "config.json").exists():
        return _load_hf(path, dtype)
    raise EigenscopeError(f"{path}: not a model (expected a HF folder, a .gguf file or an eigenscope save)")


def _load_hf(folder: Path, dtype, gguf_file: str | None = None):
    import transformers as tf

    kw = {"gguf_file": gguf_file} if gguf_file else {}
    if not kw:
        _check_folder(folder)
    try:
        config = tf.AutoConfig.from_pretrained(folder, trust_remote_code=False, **kw)
        cls = model_class(config, saved_class_name(config))
        model = cls.from_pretrained(folder, dtype=dtype, trust_remote_code=False, **kw)
    except EigenscopeError:
        raise
    except Exception as e:  # transformers reports bad files in many ways; all are the file's
        text = str(e).strip().splitlines()
        raise EigenscopeError(f"{folder}: cannot load the model ({type(e).__name__}: "
                              f"{text[0][:160] if text else ''})") from None
    return model.eval(), _tokenizer(folder, **kw)


def _check_folder(folder: Path) -> None:
    """What our own readers check before transformers reads the folder: config.json bounded,
    shard index paths inside the folder, headers whole, weights-only checkpoints, and every
    tensor named as in the model config.json describes has that model's shape."""
    from .sources.hf_folder import open_folder, read_config

    read_config(folder)
    src = open_folder(folder)
    try:
        _check_shapes(folder, src)
    finally:
        src.close()


def _check_shapes(folder: Path, src) -> None:
    import transformers as tf

    from .errors import SourceError
    from .sources.skeleton import meta_model

    try:
        config = tf.AutoConfig.from_pretrained(folder, trust_remote_code=False)
        skeleton = meta_model(model_class(config, saved_class_name(config)), config)
    except SourceError as e:
        raise SourceError(f"{folder / 'config.json'}: {e}") from None
    except Exception:  # a config transformers itself refuses: its loading reports it, wrapped
        return
    want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    for info in src.tensors():
        names = (info.name, f"model.{info.name}", info.name.removeprefix("model."))
        shape = next((want[n] for n in names if n in want), None)
        if shape is not None and tuple(info.shape) != shape:
            where = getattr(src, "file_of", lambda n: None)(info.name) or folder
            raise EigenscopeError(f"{where}: tensor {info.name} has shape {tuple(info.shape)}, "
                                  f"but {folder / 'config.json'} describes {shape}")


def _check_gguf(path: Path) -> None:
    """A GGUF file transformers will read whole: its header parses (bounds-checked, never
    hangs) and every tensor is in the file."""
    from .sources.gguf_file import GGUFSource

    src = GGUFSource(path)
    bad = [t for t in src.header.tensors if t.problem]
    if bad:
        status, warning = bad[0].problem
        raise EigenscopeError(f"{path}: cannot load as a whole model: {len(bad)} tensor(s) "
                              f"{status} ({bad[0].name}: {warning})")
    src.close()


def _tokenizer(folder: Path, **kw):
    import transformers as tf
    try:
        return tf.AutoTokenizer.from_pretrained(folder, trust_remote_code=False, **kw)
    except (OSError, ValueError, TypeError):
        return None

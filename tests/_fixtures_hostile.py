"""Helpers of the hostile-input tests: the CLI called in-process, a tiny compressed save, and
ways to tamper with a safetensors file's metadata and tensors."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import torch

from eigenscope.cli import main

SAVE_FILE = "model.safetensors"


def run_cli(*args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `eigenscope ARGS`, in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def error_lines(err: str) -> list[str]:
    """stderr lines that report an error (progress bars, warnings and library logs aside)."""
    return [ln for ln in err.splitlines()
            if ln.startswith(("eigenscope: error", "eigenscope: internal error")) or "Traceback" in ln]


def assert_user_error(code: int, err: str, *needles) -> str:
    """Exit code 2, no traceback, exactly one error line, holding every needle."""
    lines = error_lines(err)
    assert code == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("eigenscope: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, vocab_size=64,
                      max_position_embeddings=64)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).eval()


def make_save(folder: Path) -> Path:
    """A tiny Llama compressed (svd, uniform) and saved in `folder` as one file (its metadata in
    the file's header, where the tampering below edits it); returns the folder."""
    import eigenscope

    model, plan = eigenscope.compress(tiny_llama(), ratio=0.5, method="svd",
                                      allocation="uniform", multiple=4)
    folder.mkdir(parents=True, exist_ok=True)
    eigenscope.save(model, folder / SAVE_FILE, plan=plan)
    return folder


def copy_save(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest)
    return dest


def read_save(folder: Path) -> tuple[dict, dict]:
    """(tensors, metadata) of a save's model.safetensors."""
    from safetensors import safe_open

    with safe_open(str(folder / SAVE_FILE), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def write_save(folder: Path, tensors: dict, meta: dict) -> Path:
    from safetensors.torch import save_file

    save_file(tensors, str(folder / SAVE_FILE), metadata=meta)
    return folder


def tamper(folder: Path, *, meta=None, tensors=None) -> Path:
    """Rewrite a save: meta(dict) and tensors(dict) edit the parsed metadata / tensors in place."""
    sd, md = read_save(folder)
    if meta is not None:
        meta(md)
    if tensors is not None:
        tensors(sd)
    return write_save(folder, sd, md)


def edit_json(md: dict, key: str, edit) -> None:
    """Apply edit(value) to the JSON in metadata `key` (edit may return a replacement)."""
    value = json.loads(md[key])
    new = edit(value)
    md[key] = json.dumps(value if new is None else new)

"""`eigenscope compress SOURCE --ratio R --out DIR` and `eigenscope evaluate MODEL`."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from ..compression.methods import describe
from ._app import app

MAX_MEMORY_HELP = ("Memory for what is held between steps (e.g. 2GiB, 512MB); default "
                   "min(4 GiB, a quarter of the available memory).")

_METHOD_HELP = "Compression method: " + "; ".join(f"{n}: {d}" for n, d in describe().items())


@app.command()
def compress(
    source: str = typer.Argument(..., help="HF folder (single or sharded safetensors), .gguf file, or a "
                                          "built-in name: smollm2-135m, minilm-l6. Read block by block, "
                                          "never whole."),
    ratio: float = typer.Option(..., "--ratio", "-r", help="Fraction in (0, 1) of the targeted matrices' "
                                                           "parameters to REMOVE."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder receiving the compressed model (shards, "
                                                      "index, tokenizer)."),
    method: str = typer.Option("whiten", "--method", help=_METHOD_HELP),
    allocation: str = typer.Option("global", "--allocation", help="global, knapsack, uniform, gd_rank, energy:F."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="Calibration text file (default: pydoc topics)."),
    layers: Optional[str] = typer.Option(None, "--layers", help="Regex on Linear names to compress."),
    seqs: int = typer.Option(32, "--calib-seqs", help="Calibration sequences."),
    seq_len: int = typer.Option(256, "--seq-len", help="Tokens per calibration sequence."),
    multiple: int = typer.Option(8, "--multiple", help="Round ranks down to a multiple of this."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help=MAX_MEMORY_HELP),
    offload_dir: Optional[Path] = typer.Option(None, "--offload-dir",
                                               help="Where calibration activations go beyond --max-memory "
                                                    "(default: the system's temporary folder)."),
    objective: str = typer.Option("params", "--objective", help="params: --ratio removes parameters; "
                                  "latency: it removes predicted time (measured on this device, cached); "
                                  "slower factorisations stay dense; params-fast: --ratio removes "
                                  "parameters using only ranks measured faster than dense."),
    quantize: str = typer.Option("none", "--quantize", help="none, int8 or int4: then quantize the factors "
                                 "and the dense Linears left (int4 in groups of 64). Holds the compressed "
                                 "model in memory."),
):
    """Compress SOURCE with low-rank factors and save it; `eigenscope.load(OUT)` reads it back."""
    from ..compression.api import compress as run
    from ..validate import check

    check("compress", cli=True, source=source, ratio=ratio, method=method, allocation=allocation,
          layers=layers, n_seqs=seqs, seq_len=seq_len, multiple=multiple, calib_file=calib,
          out_model=out, max_memory=max_memory, objective=objective, sources=[source])
    bits = _quant_bits(quantize)
    calibration = _read_text(calib, "--calib")
    result, plan = run(source, ratio=ratio, method=method, allocation=allocation,
                       calibration=calibration, layers=layers, n_seqs=seqs, seq_len=seq_len,
                       multiple=multiple, out=None if bits else out, max_memory=max_memory,
                       offload_dir=offload_dir, objective=objective, progress=True)
    path = result if not bits else _quantize_and_save(result, plan, bits, layers, out)
    a = plan.attrs
    low = plan["rank"].notna().sum()
    typer.echo(f"{low}/{len(plan)} matrices factorised; targeted parameters {a['target_params_before']:,} -> "
               f"{a['target_params_after']:,} ({100 * a['removed_fraction']:.1f} % removed)")
    secs = sorted(v for k, v in a["block_seconds"].items() if k != "frame")
    if secs:
        typer.echo(f"time per block: median {secs[len(secs) // 2]:.1f} s (min {secs[0]:.1f}, "
                   f"max {secs[-1]:.1f}) over {len(secs)} blocks")
    typer.echo(f"model: {a['model_params']:,} parameters kept, {a['model_bytes'] / 2**20:.1f} MiB; "
               f"{a['seconds']:.0f}s; wrote {path}")


@app.command()
def evaluate(
    model: str = typer.Argument(..., help="Compressed folder, HF folder, .gguf, or built-in name."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Model to compare with (KL, top-1)."),
    text: Optional[Path] = typer.Option(None, "--text", help="Evaluation text file (default: pydoc topics)."),
    seq_len: int = typer.Option(256, "--seq-len"),
    max_tokens: int = typer.Option(8192, "--max-tokens"),
    skip_tokens: Optional[int] = typer.Option(
        None, "--skip-tokens", help="Skip the text's first tokens. Default: 0 for --text; for the "
                                    "pydoc default, 4x what `compress` calibrates on by default."),
):
    """Perplexity, size and speed of MODEL; with --reference, KL and top-1 agreement (or cosine)."""
    from ..evaluation import evaluate as run
    from ..validate import check

    check("evaluate", cli=True, source=model, reference=reference, seq_len=seq_len,
          max_tokens=max_tokens, skip_tokens=skip_tokens, text_file=text)
    res = run(model, _read_text(text, "--text"), reference=reference, seq_len=seq_len, max_tokens=max_tokens,
              skip_tokens=skip_tokens)
    width = max(len(k) for k in res)
    for k, v in res.items():
        if isinstance(v, float) and math.isnan(v):
            continue
        typer.echo(f"{k:<{width}}  {v:,.4g}" if isinstance(v, float) else f"{k:<{width}}  {v:,}")


def _quant_bits(quantize: str) -> int:
    from ..errors import ArgumentError
    bits = {"none": 0, "int8": 8, "int4": 4}.get(quantize)
    if bits is None:
        raise ArgumentError(f"--quantize {quantize!r}: choose none, int8 or int4")
    return bits


def _quantize_and_save(model, plan, bits: int, layers, out: Path) -> Path:
    from ..compression.io import save
    from ..compression.quantize import quantize_
    from ..nn.quant import model_nbytes

    quantize_(model, bits=bits, group=None if bits == 8 else 64, layers=layers, progress=True)
    plan.attrs["model_bytes"] = model_nbytes(model)
    return save(model, out, plan=plan)


def _read_text(path: Optional[Path], option: str):
    from ..errors import ArgumentError

    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise ArgumentError(f"{option}: {path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ArgumentError(f"{option}: {path} is not UTF-8 text (byte {e.start}); give a text "
                            "file") from None

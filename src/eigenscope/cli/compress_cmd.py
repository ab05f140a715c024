"""`eigenscope compress SOURCE --ratio R --out DIR` and `eigenscope evaluate MODEL`."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from ..compression.methods import describe
from ._app import app

_METHOD_HELP = "Compression method: " + "; ".join(f"{n}: {d}" for n, d in describe().items())


@app.command()
def compress(
    source: str = typer.Argument(..., help="HF folder, .gguf file, or a built-in name: smollm2-135m, minilm-l6."),
    ratio: float = typer.Option(..., "--ratio", "-r", help="Fraction in (0, 1) of the targeted matrices' "
                                                           "parameters to REMOVE."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder receiving model.safetensors (+ tokenizer)."),
    method: str = typer.Option("whiten", "--method", help=_METHOD_HELP),
    allocation: str = typer.Option("global", "--allocation", help="global, knapsack, uniform, gd_rank, energy:F."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="Calibration text file (default: pydoc topics)."),
    layers: Optional[str] = typer.Option(None, "--layers", help="Regex on Linear names to compress."),
    seqs: int = typer.Option(32, "--calib-seqs", help="Calibration sequences."),
    seq_len: int = typer.Option(256, "--seq-len", help="Tokens per calibration sequence."),
    multiple: int = typer.Option(8, "--multiple", help="Round ranks down to a multiple of this."),
):
    """Compress SOURCE with low-rank factors and save it; `eigenscope.load(OUT)` reads it back."""
    import time

    from ..compression.api import compress as run
    from ..compression.io import save
    from ..models import load_model
    from ..validate import check

    check("compress", cli=True, source=source, ratio=ratio, method=method, allocation=allocation,
          layers=layers, n_seqs=seqs, seq_len=seq_len, multiple=multiple, calib_file=calib,
          out_model=out, sources=[source])
    text = _read_text(calib, "--calib")
    model, tok = load_model(source)
    t0 = time.perf_counter()
    model, plan = run(model, ratio=ratio, method=method, allocation=allocation, calibration=text,
                      tokenizer=tok, layers=layers, n_seqs=seqs, seq_len=seq_len, multiple=multiple,
                      progress=True)
    path = save(model, out, plan=plan, tokenizer=tok)
    a = plan.attrs
    low = plan["rank"].notna().sum()
    typer.echo(f"{low}/{len(plan)} matrices factorised; targeted parameters {a['target_params_before']:,} -> "
               f"{a['target_params_after']:,} ({100 * a['removed_fraction']:.1f} % removed)")
    typer.echo(f"model: {a['model_params']:,} parameters kept, {a['model_bytes'] / 2**20:.1f} MiB; "
               f"{time.perf_counter() - t0:.0f}s; wrote {path}")


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

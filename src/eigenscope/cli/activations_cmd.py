"""`eigenscope activations SOURCE`: spectra of hidden activations, one row per (layer, site)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app

SHOWN = ["name", "tokens", "dim", "mp_spikes", "effective_rank", "spectral_entropy", "top_share",
         "anisotropy", "matrix_entropy", "matrix_nuclear_norm"]


@app.command()
def activations(
    source: str = typer.Argument(..., help="A model: HF folder, .gguf, eigenscope save, or a "
                                          "built-in name (smollm2-135m, minilm-l6)."),
    out: Path = typer.Option(..., "--out", "-o",
                             help="The table: .csv, .json, .parquet, or .safetensors (rows + "
                                  "every covariance spectrum, for `eigenscope report`)."),
    text: Optional[Path] = typer.Option(None, "--text", "-t",
                                        help="A UTF-8 text file to run the model on "
                                             "(default: Python's pydoc topics)."),
    sites: str = typer.Option("residual", "--sites", "-s",
                              help="Comma-separated: residual, attn_out, mlp_in, mlp_hidden, or all."),
    layers: Optional[str] = typer.Option(None, "--layers", "-l",
                                         help="Comma-separated block indices (default: all)."),
    max_tokens: int = typer.Option(8192, "--max-tokens", help="Tokens to read (whole windows)."),
    seq_len: int = typer.Option(256, "--seq-len", help="Tokens per window of text."),
    batch_size: int = typer.Option(8, "--batch-size", help="Windows per forward pass."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the HTML report."),
    rows: int = typer.Option(12, "--rows", help="Rows of the terminal table (0: none, -1: all)."),
):
    """Covariance spectra of hidden states on real inputs: MP fit and spikes, entropies,
    effective rank, anisotropy, Matrix Entropy and Matrix Nuclear-Norm per (layer, site)."""
    from ..hidden_states.io import SUFFIXES, save_activations
    from ..hidden_states.runner import activations as run
    from ..errors import EigenscopeError

    if out.suffix.lower() not in SUFFIXES:
        raise EigenscopeError(f"{out}: unknown table format; use {', '.join(SUFFIXES)}")
    if report is not None and report.suffix.lower() not in (".html", ".htm"):
        raise EigenscopeError(f"{report}: the report is an HTML file; give --report NAME.html")
    for n, v in (("max-tokens", max_tokens), ("seq-len", seq_len), ("batch-size", batch_size)):
        if v < 1:
            raise EigenscopeError(f"--{n} must be a positive integer, not {v}")
    from ..hidden_states.sites import resolve_sites

    # every check that needs no model runs before the model is loaded
    sites_, layers_, text_ = resolve_sites(sites), _layers(layers), _read_text(text)
    df = run(source, text_, sites=sites_, layers=layers_, max_tokens=max(max_tokens, 2),
             seq_len=seq_len, batch_size=batch_size, progress=True)
    _print(df, rows)
    save_activations(out, df)
    typer.echo(f"wrote {len(df)} rows to {out}")
    if report is not None:
        from ..report.activations_view import build_activations_report
        build_activations_report(df, title=f"eigenscope activations: {source}", out=report,
                                 source=source)
        typer.echo(f"wrote {report}")


def _read_text(path: Optional[Path]) -> Optional[str]:
    from ..errors import EigenscopeError

    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EigenscopeError(f"{path}: no such text file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EigenscopeError(f"{path}: cannot read it as UTF-8 text ({type(e).__name__})") from None
    if not text.strip():
        raise EigenscopeError(f"{path}: the text file is empty")
    return text


def _layers(spec: Optional[str]):
    from ..errors import EigenscopeError

    if spec is None:
        return None
    try:
        return [int(x) for x in spec.replace(" ", "").split(",") if x]
    except ValueError:
        raise EigenscopeError(f"--layers {spec!r}: give comma-separated block indices, e.g. 0,5,11") from None


def _print(df, rows: int) -> None:
    if rows == 0 or not len(df):
        return
    shown = df if rows < 0 else df.head(rows)
    typer.echo(shown[SHOWN].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if rows > 0 and len(df) > rows:
        typer.echo(f"... {len(df) - rows} more rows")

"""`eigenscope report SOURCE` and `eigenscope compare A B`: self-contained HTML pages."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app

SOURCE_HELP = ("A model (folder, .safetensors, .gguf, built-in name smollm2-135m / minilm-l6, "
               "a model written by `eigenscope compress`) or a saved analysis (.csv, .json, "
               ".parquet, or a --save-spectra .safetensors file).")


@app.command()
def report(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file to write."),
    plots: str = typer.Option("flagged", "--plots",
                              help="Rows with embedded matplotlib plots: flagged, all, none, or "
                                   "comma-separated names / regexes. Other rows are drawn in the "
                                   "browser from a compact spectrum when clicked."),
    layers: Optional[str] = typer.Option(None, "--layers", "-l", help="Regex on matrix names (models only)."),
    metrics: Optional[str] = typer.Option(None, "--metrics", "-m", help="Metric groups (models only)."),
    title: Optional[str] = typer.Option(None, "--title", help="Page title."),
):
    """Write a self-contained HTML report: summary, sortable table, per-layer plots."""
    from ..report.api import report_from_source
    from ..validate import check

    check("report", cli=True, source=source, out_html=out, plots=plots, layers=layers,
          metrics=metrics, title=title, sources=[source])
    kw = {} if _is_table(source) else dict(layers=layers, metrics=metrics, progress=True)
    path = report_from_source(source, out, title=title, plots=plots, **kw)
    typer.echo(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB)")


@app.command()
def compare(
    a: str = typer.Argument(..., help="The first model or saved analysis (A). " + SOURCE_HELP),
    b: str = typer.Argument(..., help="The second model or saved analysis (B)."),
    out: Path = typer.Option(Path("compare.html"), "--out", "-o", help="The HTML file to write."),
    k: int = typer.Option(8, "--k", help="Dimension of the top singular subspaces compared."),
    table: Optional[Path] = typer.Option(None, "--table", help="Also write the rows to .csv/.json/.parquet."),
    layers: Optional[str] = typer.Option(None, "--layers", "-l", help="Regex on matrix names (models only)."),
    metrics: Optional[str] = typer.Option(None, "--metrics", "-m", help="Metric groups (models only)."),
):
    """Compare two checkpoints matrix by matrix: metric deltas, subspace overlap, one-sided matrices."""
    from ..analysis.tables import write_table
    from ..comparison import compare as run
    from ..validate import check

    check("compare", cli=True, source=a, reference=b, out_html=out, k=k, table=table,
          layers=layers, metrics=metrics, sources=[a, b])
    kw = {} if _is_table(a) and _is_table(b) else dict(layers=layers, metrics=metrics)
    frame = run(a, b, k=k, out=out, progress=True, **kw)
    only_a, only_b = frame.attrs["only_a"], frame.attrs["only_b"]
    typer.echo(f"{len(frame)} matrices matched, {len(only_a)} only in A, {len(only_b)} only in B")
    if len(frame):
        med = frame[["d_alpha", "rel_change", "overlap_left"]].median(numeric_only=True)
        typer.echo("median  Δalpha {:.3g}   relative change {:.3g}   top-{} overlap {:.3g}".format(
            med["d_alpha"], med["rel_change"], k, med["overlap_left"]))
    if table is not None:
        write_table(frame, table)
        typer.echo(f"wrote {len(frame)} rows to {table}")
    typer.echo(f"wrote {out}")


def _is_table(source: str) -> bool:
    from ..analysis.saved import is_analysis
    return is_analysis(source)

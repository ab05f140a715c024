"""`eigenscope analyze SOURCE`: one row per weight matrix, a compact table, optional file output."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._app import app

SHOWN = ["name", "role", "shape", "alpha", "stable_rank", "mp_spikes", "farms_alpha", "status"]


@app.command()
def analyze(
    sources: List[str] = typer.Argument(..., metavar="SOURCE...",
                                        help="A Hugging Face folder (safetensors or weights-only .bin), "
                                             "a .safetensors or .gguf file, a model written by "
                                             "`eigenscope compress`, or a built-in name: smollm2-135m, "
                                             "minilm-l6. Several: one table with a source (and step) column."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write all rows to .csv, .json or .parquet "
                                                                 "(several sources: rewritten as rows arrive)."),
    metrics: Optional[str] = typer.Option(None, "--metrics", "-m",
                                          help="Comma-separated metric groups or columns "
                                               "(norms,powerlaw,mp,randomize,farms,weibull). Default: all."),
    layers: Optional[str] = typer.Option(None, "--layers", "-l", help="Regex on matrix names; others are not read."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (eigenvalue problems)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Threads for the per-matrix metrics."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory",
                                             help="Bytes of matrices read, queued and in flight (e.g. "
                                                  "2GiB); default min(4 GiB, a quarter of the available "
                                                  "memory). A larger matrix is analysed alone."),
    seed: int = typer.Option(0, "--seed", help="Seed of the randomization test and sub-sampling."),
    save_spectra: Optional[Path] = typer.Option(None, "--save-spectra",
                                                help="Also save every matrix's singular values (.safetensors)."),
    rows: int = typer.Option(20, "--rows", help="Rows of the terminal table (0: none, -1: all)."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="auto|ADDRESS",
                                      help="Run on a Ray cluster: auto (the cluster this machine "
                                           "joined with `ray start`) or its address host:port. "
                                           "Paths must be reachable from every node."),
    resume: bool = typer.Option(False, "--resume", help="Keep the rows already in --out; analyse "
                                                        "only the missing (source, matrix) pairs."),
):
    """Analyse every weight matrix of SOURCE through its spectrum (several: one table).

    Exit code 1 when some sources failed (their rows have status "failed"), 2 on bad input.
    """
    from ..validate import check

    options = dict(metrics=metrics, layers=layers, device=device, workers=workers, seed=seed,
                   max_memory=max_memory)
    for source in sources:   # every option and source, before any work
        check("analyze", cli=True, source=source, save_spectra=save_spectra, out_table=out,
              rows=rows, sources=sources, **options)
    if len(sources) > 1 or ray is not None or resume:
        return _analyze_many(sources, out, ray, resume, save_spectra, options)
    _analyze_one(sources[0], out, rows, save_spectra, options)


def _analyze_one(source, out, rows, save_spectra, options) -> None:
    """One source: the terminal table and summary, the rows to --out, spectra if asked."""
    import time

    from ..analysis.runner import analyze as run
    from ..analysis.summary import summary
    from ..analysis.tables import write_table

    t0 = time.perf_counter()
    df = run(source, **options, save_spectra=save_spectra, progress=True)
    elapsed = time.perf_counter() - t0
    _print_table(df, rows)
    _print_summary(summary(df), elapsed)
    if out is not None:
        write_table(df, out)
        typer.echo(f"wrote {len(df)} rows to {out}")
    if save_spectra is not None:
        typer.echo(f"wrote singular values to {save_spectra}")


def _analyze_many(sources, out, ray, resume, save_spectra, options) -> None:
    """Several sources (or a cluster, or a resumed run): one table; exit 1 if some failed."""
    import time

    from ..engines import analyze_many
    from ..errors import ArgumentError

    if save_spectra is not None:
        raise ArgumentError("--save-spectra takes one source; run analyze once per source")
    t0 = time.perf_counter()
    df = analyze_many(sources, engine="ray" if ray else "local", address=ray, out=out,
                      resume=resume, progress=True, **options)
    failed = _print_sources(df)
    typer.echo(f"{df['source'].nunique()} sources, {len(df)} rows in "
               f"{time.perf_counter() - t0:.1f} s" + (f"; wrote {out}" if out else ""))
    if failed:
        typer.echo(f"{len(failed)} source(s) failed: {', '.join(failed)}", err=True)
        raise typer.Exit(code=1)


def _print_sources(df) -> list[str]:
    """One line per source (step, matrices, failed rows, alpha median); the failed sources."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from ..analysis.summary import summary

    if df.empty:
        return []
    table = Table(show_header=True, header_style="bold", box=None)
    for c in ("source", "step", "matrices", "failed", "alpha median", "stable rank mean"):
        table.add_column(c, justify="left" if c == "source" else "right")
    per = summary(df, by="source")
    failed = []
    for source, g in df.groupby("source", sort=False):
        s, bad = per.loc[source], int((g["status"] == "failed").sum())
        failed += [source] if bad else []
        step = g["step"].iloc[0]
        table.add_row(source, "" if pd.isna(step) else str(step), str(s["matrices"]),
                      str(bad), _fmt(s["alpha_median"]), _fmt(s["stable_rank_mean"]))
    Console().print(table)
    return failed


def _print_table(df, rows: int) -> None:
    from rich.console import Console
    from rich.table import Table

    if rows == 0 or df.empty:
        return
    shown = df if rows < 0 else _pick_rows(df, rows)
    if len(shown) < len(df):
        typer.echo(f"bad rows and the most extreme alphas, {len(shown)} of {len(df)}:")
    table = Table(show_header=True, header_style="bold", box=None)
    for c in SHOWN:
        left = c in ("name", "role", "shape", "status")
        table.add_column(c, justify="left" if left else "right", no_wrap=c == "name")
    for name, (_, r) in zip(_short_names(shown["name"]), shown.iterrows()):
        table.add_row(*[name if c == "name" else _fmt(r[c]) for c in SHOWN])
    Console().print(table)
    if len(shown) < len(df):
        typer.echo(f"... {len(df) - len(shown)} more rows (use --rows -1 or --out FILE)")


def _short_names(names) -> list[str]:
    """Names without their common dotted prefix and the trailing '.weight' (the table is narrow)."""
    parts = [n.split(".") for n in names]
    common = 0
    while all(len(p) > common + 2 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    out = [".".join(p[common:]) for p in parts]
    return [n[: -len(".weight")] if n.endswith(".weight") else n for n in out]


def _pick_rows(df, rows: int):
    """The rows worth a glance: bad ones first, then the most extreme alphas."""
    bad = df[df["status"] != "ok"]
    rest = df[df["status"] == "ok"].sort_values("alpha", ascending=False, na_position="last")
    half = max(rows - len(bad), 0)
    picked = list(bad.index[:rows]) + list(rest.index[: (half + 1) // 2]) + list(rest.index[::-1][: half // 2])
    return df.loc[sorted(set(picked))]


def _print_summary(s, elapsed: float) -> None:
    from ..analysis.schema import ALPHA_BAND

    lo, hi = (f"{a:g}" for a in ALPHA_BAND)
    typer.echo(
        f"{s['matrices']} matrices ({s['bad']} bad) in {elapsed:.1f} s | alpha median "
        f"{_fmt(s['alpha_median'])} over {s['alpha_fitted']} fits | under-trained (alpha>{hi}) "
        f"{s['under_trained']} | over-fit (alpha<{lo}) {s['over_fit']} | correlation traps "
        f"{s['correlation_traps']}")


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if v != v else (f"{v:.0f}" if v.is_integer() and abs(v) < 1e6 else f"{v:.3g}")
    return str(v)

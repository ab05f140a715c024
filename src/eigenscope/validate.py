"""Every option of the verbs, declared once (OPTIONS) and checked in one place (`check`) before
any heavy work, in the spirit of scikit-learn's parameter constraints. The API verbs and the CLI
call the same `check`; a value outside its constraints raises ArgumentError naming the option
(its CLI flag when the CLI calls), what it must be, and what it got. Outputs are also refused
when they would write over a source (`_io.guard_output`).

    >>> check("compress", ratio=0.3, allocation="energy:0.9")
    >>> check("compress", allocation="energy:5")
    Traceback (most recent call last):
    eigenscope.errors.ArgumentError: allocation: must be global, knapsack, uniform, gd_rank, energy:F with F in (0, 1], an int rank >= 1, a float in (0, 1) or a {layer: rank} dict; got 'energy:5'
    >>> check("analyze", cli=True, workers=0)
    Traceback (most recent call last):
    eigenscope.errors.ArgumentError: --workers: must be an int in [1, 1024]; got 0
"""
from __future__ import annotations

import os
from numbers import Integral, Real

from ._constraints import (Allocation, Constraint, Device, Flag, InputFile, Interval, Method,
                           Metrics, NoneOK, OneOf, Output, Plots, Regex, Size, Source, Text)
from .errors import ArgumentError

TABLE_SUFFIXES = (".csv", ".json", ".parquet")
HTML_SUFFIXES = (".html", ".htm")
RATIO_ALLOCATIONS = ("global", "knapsack", "uniform")   # these need a ratio


NONE = NoneOK()
INT1 = Interval(Integral, 1)

# name -> (CLI flag, constraints); a value must satisfy one of them
OPTIONS: dict[str, tuple[str, tuple[Constraint, ...]]] = {
    "source": ("SOURCE", (Source(),)),
    "reference": ("--reference", (NONE, Source())),
    "ratio": ("--ratio", (NONE, Interval(Real, 0, 1, "neither"))),
    "method": ("--method", (Method(),)),
    "allocation": ("--allocation", (Allocation(),)),
    "layers": ("--layers", (NONE, Regex())),
    "metrics": ("--metrics", (NONE, Metrics())),
    "device": ("--device", (NONE, Device())),
    "workers": ("--workers", (NONE, Interval(Integral, 1, 1024))),
    "seed": ("--seed", (Interval(Integral, 0, 2**32 - 1),)),
    "precision": ("--precision", (OneOf("auto", "float64", "float32"),)),
    "seq_len": ("--seq-len", (Interval(Integral, 2, 2**20),)),
    "n_seqs": ("--calib-seqs", (Interval(Integral, 2, 2**20),)),
    "batch_size": ("--batch-size", (Interval(Integral, 1, 2**16),)),
    "heldout": ("--heldout", (Interval(Real, 0, 1, "left"),)),
    "multiple": ("--multiple", (Interval(Integral, 1, 2**16),)),
    "grad_batches": ("--grad-batches", (INT1,)),
    "max_tokens": ("--max-tokens", (Interval(Integral, 1, 2**31),)),
    "skip_tokens": ("--skip-tokens", (NONE, Interval(Integral, 0, 2**31))),
    "max_memory": ("--max-memory", (NONE, Size())),
    "convs": ("--convs", (NONE, Flag())),
    "objective": ("--objective", (OneOf("params", "latency", "params-fast"),)),
    "latency_tokens": ("--latency-tokens", (Interval(Integral, 1, 2**20),)),
    "k": ("--k", (Interval(Integral, 1, 4096),)),
    "movers": ("--movers", (Interval(Integral, 0, 10_000),)),
    "plots": ("--plots", (NONE, Plots())),
    "max_images": ("--max-images", (Interval(Integral, 0, 100_000),)),
    "title": ("--title", (NONE, Text())),
    "rows": ("--rows", (Interval(Integral, -1),)),
    "calib_file": ("--calib", (NONE, InputFile())),   # CLI only: the API takes the inputs
    "text_file": ("--text", (NONE, InputFile())),
    "save_spectra": ("--save-spectra", (NONE, Output((".safetensors",)))),
    "out_table": ("--out", (NONE, Output(TABLE_SUFFIXES))),
    "table": ("--table", (NONE, Output(TABLE_SUFFIXES))),
    "out_html": ("--out", (NONE, Output(HTML_SUFFIXES))),
    "out_model": ("--out", (Output((".safetensors",), folder=True),)),
}
OUTPUTS = ("save_spectra", "out_table", "table", "out_html", "out_model")
# where the API's keyword differs from the option's name (per verb where the verbs differ)
API_NAMES = {"out_html": "out", "out_model": "path", ("compress", "out_model"): "out"}
INPUT_FILES = ("calib_file", "text_file")

_SHARED = ("layers", "metrics", "device", "workers", "seed", "precision")
VERBS = {
    "analyze": ("source", *_SHARED, "save_spectra", "out_table", "rows", "max_memory"),
    "compress": ("source", "ratio", "method", "allocation", "layers", "seq_len", "n_seqs",
                 "batch_size", "heldout", "multiple", "grad_batches", "calib_file", "out_model",
                 "convs", "max_memory", "objective", "latency_tokens"),
    "evaluate": ("source", "reference", "seq_len", "max_tokens", "skip_tokens", "batch_size",
                 "text_file"),
    "report": ("source", *_SHARED, "plots", "max_images", "title", "out_html"),
    "compare": ("source", "reference", *_SHARED, "k", "movers", "title", "out_html", "table"),
    "save": ("out_model",),
}


def check(verb: str, *, cli: bool = False, sources=(), **values) -> None:
    """Check `values` (options of `verb`, by API name) against OPTIONS, then the rules between
    options, then that no output would write over one of `sources` (model specs, paths).
    `cli=True` names options by their CLI flags. Raises ArgumentError; returns None."""
    allowed = VERBS[verb]
    for name, value in values.items():
        if name not in allowed:
            raise TypeError(f"check({verb!r}): {name!r} is not an option of {verb}")
        flag, rules = OPTIONS[name]
        label = _label(name, cli, verb)
        problems = [p for r in rules if (p := r.problem(value)) is not None]
        if len(problems) == len(rules):
            shown = [p for r, p in zip(rules, problems) if r is not NONE]  # None was not meant
            raise ArgumentError(f"{label}: {' or '.join(shown)}; got {_show(value)}")
    _cross_rules(verb, values, cli)
    # inputs the CLI reads (--calib, --text) are protected like the sources
    _guard_outputs(verb, values, list(sources) + [values[n] for n in INPUT_FILES if values.get(n)], cli)


def check_args(verb: str, args: dict, **extra) -> None:
    """`check` with the options of `verb` picked from `args` (a verb's `locals()` at its top:
    its parameters, by name) plus `extra` (e.g. source=model, sources=[...])."""
    check(verb, **{k: v for k, v in args.items() if k in VERBS[verb] and k not in extra}, **extra)


def _cross_rules(verb: str, values: dict, cli: bool) -> None:
    if verb == "compress" and values.get("allocation", "global") in RATIO_ALLOCATIONS \
            and "ratio" in values and values["ratio"] is None:
        label = _label("ratio", cli, verb)
        raise ArgumentError(f"{label}: allocation {values.get('allocation', 'global')!r} needs a "
                            "ratio, a float in (0, 1) of the targeted parameters to remove")


def _guard_outputs(verb: str, values: dict, sources: list, cli: bool) -> None:
    from ._io import guard_output
    from .sources.formats import protected_paths

    protected = [p for s in sources for p in protected_paths(s)]
    for name in OUTPUTS:
        if values.get(name) is not None and protected:
            guard_output(values[name], protected, option=_label(name, cli, verb))


def _label(name: str, cli: bool, verb: str) -> str:
    """How the user named the option: its CLI flag, or the API keyword."""
    return OPTIONS[name][0] if cli else API_NAMES.get((verb, name), API_NAMES.get(name, name))


def model_origin(model) -> list:
    """The local folder a transformers model was loaded from (its config's _name_or_path), as a
    source `save` must not write over; [] when unknown."""
    origin = getattr(getattr(model, "config", None), "_name_or_path", None)
    return [origin] if isinstance(origin, str) and origin and os.path.exists(origin) else []


def _show(v) -> str:
    text = repr(v) if not isinstance(v, os.PathLike) else repr(os.fspath(v))
    return text if len(text) <= 80 else text[:77] + "..."

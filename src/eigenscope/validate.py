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

import math
import os
import re
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

from .errors import ArgumentError

TABLE_SUFFIXES = (".csv", ".json", ".parquet")
HTML_SUFFIXES = (".html", ".htm")
FIXED_ALLOCATIONS = ("global", "knapsack", "uniform", "gd_rank")
RATIO_ALLOCATIONS = ("global", "knapsack", "uniform")   # these need a ratio
PLOT_WORDS = ("flagged", "all", "none")


class Constraint:
    """One allowed form of a value. `problem(v)` is None when `v` has this form, else a short
    phrase ("must be an int >= 1")."""

    text = "valid"

    def problem(self, v) -> str | None:
        """None if `v` satisfies the constraint, else what is wrong."""
        return None if self.ok(v) else f"must be {self.text}"

    def ok(self, v) -> bool:
        """Whether `v` satisfies the constraint."""
        raise NotImplementedError


class NoneOK(Constraint):
    """None (the option's automatic default)."""
    text = "None"

    def ok(self, v):
        return v is None


@dataclass(frozen=True)
class Interval(Constraint):
    """A number of `kind` (Integral or Real; bool is neither) in [lo, hi], `closed` at the
    ends named: "both", "left", "right", "neither". NaN is never inside."""
    kind: type
    lo: float | None = None
    hi: float | None = None
    closed: str = "both"

    @property
    def text(self):
        what = "an int" if self.kind is Integral else "a float"
        lo, hi = (v if v is None or self.kind is not Integral else int(v) for v in (self.lo, self.hi))
        if hi is None:
            return f"{what} {'>=' if self.closed in ('both', 'left') else '>'} {lo}"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        return f"{what} in {left}{lo}, {hi}{right}"

    def ok(self, v):
        if isinstance(v, bool) or not isinstance(v, self.kind) or not math.isfinite(v):
            return False
        lo_ok = self.lo is None or (v >= self.lo if self.closed in ("both", "left") else v > self.lo)
        hi_ok = self.hi is None or (v <= self.hi if self.closed in ("both", "right") else v < self.hi)
        return lo_ok and hi_ok


class OneOf(Constraint):
    """One of the listed strings."""

    def __init__(self, *values):
        self.values = values
        self.text = "one of " + ", ".join(values)

    def ok(self, v):
        return isinstance(v, str) and v in self.values


class Text(Constraint):
    """A string of at most 1,000 characters."""
    text = "a string"

    def ok(self, v):
        return isinstance(v, str) and len(v) <= 1000


class Regex(Constraint):
    """A regular expression Python's `re` compiles."""
    text = "a regular expression"

    def problem(self, v):
        return _regex_problem(v)


def _regex_problem(v) -> str | None:
    if not isinstance(v, str):
        return "must be a regular expression (a string)"
    try:
        re.compile(v)
    except (re.error, RecursionError, OverflowError) as e:
        return f"is not a valid regular expression ({str(e)[:80] or type(e).__name__})"
    return None


class Device(Constraint):
    """cpu, or cuda / cuda:N / mps where that device exists."""
    text = "cpu or cuda[:N]"

    def problem(self, v):
        import torch

        try:
            d = torch.device(v)
        except (RuntimeError, TypeError, ValueError):
            return f"must be {self.text}"
        if d.type == "cpu":
            return None
        if d.type == "cuda":
            if not torch.cuda.is_available():
                return "asks for a CUDA GPU, but none is available here (use cpu)"
            if d.index is not None and d.index >= torch.cuda.device_count():
                return f"asks for GPU {d.index}, but only {torch.cuda.device_count()} exist"
            return None
        if d.type == "mps" and torch.backends.mps.is_available():
            return None
        return f"must be {self.text} (device type {d.type!r} is not available)"


class Allocation(Constraint):
    """How ranks are chosen: a name, energy:F, an int rank, a float energy fraction, a dict."""
    text = (f"{', '.join(FIXED_ALLOCATIONS)}, energy:F with F in (0, 1], an int rank >= 1, "
            "a float in (0, 1) or a {layer: rank} dict")
    _RANK = Interval(Integral, 1)
    _FRACTION = Interval(Real, 0, 1, "neither")

    def ok(self, v):
        if isinstance(v, str):
            if v in FIXED_ALLOCATIONS or v == "energy":
                return True
            m = re.fullmatch(r"energy:(.+)", v)
            return bool(m) and _fraction(m.group(1))
        if isinstance(v, dict):
            return all(isinstance(k, str) and self._one(r) for k, r in v.items())
        return self._one(v)

    def _one(self, r):
        return self._RANK.ok(r) or (isinstance(r, float) and self._FRACTION.ok(r))


def _fraction(text: str) -> bool:
    try:
        f = float(text)
    except ValueError:
        return False
    return 0 < f <= 1


class Method(Constraint):
    """A registered compression method name or config."""
    text = "a registered compression method"

    def problem(self, v):
        from .compression.methods import names, resolve
        try:
            resolve(v)
        except (ArgumentError, TypeError):
            return f"must be one of {', '.join(names())} or a registered config"
        return None


class Metrics(Constraint):
    """Metric groups or columns: a comma-separated string or a list."""
    text = "metric groups or columns"

    def problem(self, v):
        from .analysis.schema import METRIC_GROUPS, resolve_metrics
        from .errors import EigenscopeError
        if not isinstance(v, (str, list, tuple)) or not all(isinstance(x, str) for x in v):
            return f"must be a comma-separated string or a list of: all, {', '.join(METRIC_GROUPS)}"
        try:
            resolve_metrics(v)
        except EigenscopeError as e:
            return str(e)
        return None


class Plots(Constraint):
    """flagged, all, none, or names / regular expressions (comma-separated or a list)."""
    text = "flagged, all, none, or comma-separated names / regular expressions"

    def problem(self, v):
        if isinstance(v, str) and v in PLOT_WORDS:
            return None
        items = v.split(",") if isinstance(v, str) else v
        if not isinstance(items, (list, tuple)):
            return f"must be {self.text}"
        for p in items:
            if p and (bad := _regex_problem(p)):
                return f"{p!r} {bad}"
        return None


class Source(Constraint):
    """A model: a path or a name (opened later, with its own one-line errors), or an nn.Module
    whose weights are all present (none on the meta device)."""
    text = "a path, a built-in name or an nn.Module"

    def problem(self, v):
        import torch
        if isinstance(v, (str, os.PathLike)):
            return None if str(v) else "must not be empty"
        if isinstance(v, torch.nn.Module):
            meta = next((n for n, t in _tensors(v) if t.is_meta), None)
            return None if meta is None else (f"has no weights: {meta} is on the meta device "
                                              "(load the weights first)")
        return None  # other objects: the verb itself decides (e.g. a Source instance)


def _tensors(module):
    yield from module.named_parameters()
    yield from module.named_buffers()


class InputFile(Constraint):
    """An existing regular file we may read (a FIFO or a device would block or never end)."""
    text = "an existing, readable regular file"

    def problem(self, v):
        if not isinstance(v, (str, os.PathLike)):
            return f"must be {self.text}"
        return _path_problem(self._problem, Path(v))

    def _problem(self, p: Path):
        if not p.exists():
            return "no such file"
        if not p.is_file():
            return "is not a regular file"
        return None if os.access(p, os.R_OK) else "is not readable"


@dataclass(frozen=True)
class Output(Constraint):
    """A path to write: a file with one of `suffixes`, or (folder=True) a folder or a file with
    them. Its nearest existing parent must be a writable folder."""
    suffixes: tuple = ()
    folder: bool = False

    @property
    def text(self):
        kinds = " / ".join(self.suffixes)
        return f"a folder or a {kinds} file" if self.folder else f"a {kinds} file path"

    def problem(self, v):
        if not isinstance(v, (str, os.PathLike)) or not str(v):
            return f"must be {self.text}"
        return _path_problem(self._problem, Path(v))

    def _problem(self, p: Path):
        is_file = p.suffix.lower() in self.suffixes
        if not is_file and not self.folder:
            return f"must be {self.text} ({f'unknown suffix {p.suffix!r}' if p.suffix else 'no suffix'})"
        if (p.is_dir() and is_file) or (p.exists() and not p.is_dir() and not is_file):
            return f"is an existing {'folder' if p.is_dir() else 'file'}; must be {self.text}"
        parent = next((a for a in p.absolute().parents if a.exists()), None)
        if parent is None or not parent.is_dir():
            return f"cannot be created: {parent} is not a folder"
        return None if os.access(parent, os.W_OK | os.X_OK) else f"cannot be written: {parent} is read-only"


def _path_problem(check, p: Path) -> str | None:
    """check(p), or the system's reason when the path cannot even be looked at (too long...)."""
    try:
        return check(p)
    except OSError as e:
        return f"is not a usable path ({e.strerror or type(e).__name__})"


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
API_NAMES = {"out_html": "out", "out_model": "path"}   # where the API's keyword differs
INPUT_FILES = ("calib_file", "text_file")

_SHARED = ("layers", "metrics", "device", "workers", "seed", "precision")
VERBS = {
    "analyze": ("source", *_SHARED, "save_spectra", "out_table", "rows"),
    "compress": ("source", "ratio", "method", "allocation", "layers", "seq_len", "n_seqs",
                 "batch_size", "heldout", "multiple", "grad_batches", "calib_file", "out_model"),
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
        label = _label(name, cli)
        problems = [p for r in rules if (p := r.problem(value)) is not None]
        if len(problems) == len(rules):
            shown = [p for r, p in zip(rules, problems) if r is not NONE]  # None was not meant
            raise ArgumentError(f"{label}: {' or '.join(shown)}; got {_show(value)}")
    _cross_rules(verb, values, cli)
    # inputs the CLI reads (--calib, --text) are protected like the sources
    _guard_outputs(values, list(sources) + [values[n] for n in INPUT_FILES if values.get(n)], cli)


def check_args(verb: str, args: dict, **extra) -> None:
    """`check` with the options of `verb` picked from `args` (a verb's `locals()` at its top:
    its parameters, by name) plus `extra` (e.g. source=model, sources=[...])."""
    check(verb, **{k: v for k, v in args.items() if k in VERBS[verb] and k not in extra}, **extra)


def _cross_rules(verb: str, values: dict, cli: bool) -> None:
    if verb == "compress" and values.get("allocation", "global") in RATIO_ALLOCATIONS \
            and "ratio" in values and values["ratio"] is None:
        label = _label("ratio", cli)
        raise ArgumentError(f"{label}: allocation {values.get('allocation', 'global')!r} needs a "
                            "ratio, a float in (0, 1) of the targeted parameters to remove")


def _guard_outputs(values: dict, sources: list, cli: bool) -> None:
    from ._io import guard_output
    from .sources.formats import protected_paths

    protected = [p for s in sources for p in protected_paths(s)]
    for name in OUTPUTS:
        if values.get(name) is not None and protected:
            guard_output(values[name], protected, option=_label(name, cli))


def _label(name: str, cli: bool) -> str:
    """How the user named the option: its CLI flag, or the API keyword."""
    return OPTIONS[name][0] if cli else API_NAMES.get(name, name)


def model_origin(model) -> list:
    """The local folder a transformers model was loaded from (its config's _name_or_path), as a
    source `save` must not write over; [] when unknown."""
    origin = getattr(getattr(model, "config", None), "_name_or_path", None)
    return [origin] if isinstance(origin, str) and origin and os.path.exists(origin) else []


def _show(v) -> str:
    text = repr(v) if not isinstance(v, os.PathLike) else repr(os.fspath(v))
    return text if len(text) <= 80 else text[:77] + "..."

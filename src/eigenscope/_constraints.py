"""The constraints an option's value may satisfy (scikit-learn's parameter-constraints idea):
each says what is wrong with a value in a short phrase, or None. The options themselves, and
which constraints each has, are declared in `validate.py`."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

from .errors import ArgumentError

FIXED_ALLOCATIONS = ("global", "knapsack", "uniform", "gd_rank")
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


class Size(Constraint):
    """A memory size: bytes as a positive number, or a string such as "2GiB" (_memory.parse_size)."""
    text = "a size such as 2GiB, 512MB or a positive number of bytes"

    def ok(self, v):
        from ._memory import parse_size
        try:
            parse_size(v)
        except ArgumentError:
            return False
        return True


class Flag(Constraint):
    """True or False."""
    text = "True or False"

    def ok(self, v):
        return isinstance(v, bool)


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

"""The public API is a decision: `eigenscope.__all__` lists the verbs, configs and errors; every
public name (anywhere in the package) has a docstring; internals are not re-exported whole."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import eigenscope

VERBS = {"analyze", "summary", "compress", "save", "load", "evaluate", "compare", "open_source"}
CONFIGS = {"SVDConfig", "ASVDConfig", "FWSVDConfig", "WhitenConfig"}
ERRORS = {"EigenscopeError", "SourceError", "ArgumentError"}


def test_all_lists_the_verbs_configs_and_errors():
    assert VERBS | CONFIGS | ERRORS <= set(eigenscope.__all__)
    for name in eigenscope.__all__:
        assert getattr(eigenscope, name) is not None
    from eigenscope.compression.methods import names
    assert {getattr(eigenscope, c).name for c in CONFIGS} <= set(names())


def _modules():
    yield eigenscope
    for info in pkgutil.walk_packages(eigenscope.__path__, "eigenscope."):
        if info.name.endswith("__main__"):
            continue
        yield importlib.import_module(info.name)


def _public(mod):
    for name, obj in vars(mod).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield f"{mod.__name__}.{name}", obj
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    fn = getattr(member, "__func__", member)
                    if not attr.startswith("_") and inspect.isfunction(fn):
                        yield f"{mod.__name__}.{name}.{attr}", getattr(obj, attr)


def test_every_public_name_has_a_docstring():
    missing = [f"{m.__name__} (module)" for m in _modules() if not (m.__doc__ or "").strip()]
    missing += [q for m in _modules() for q, obj in _public(m) if not inspect.getdoc(obj)]
    assert not missing, "no docstring:\n" + "\n".join(missing)


@pytest.mark.parametrize("package", ["sources", "maths", "nn", "compression", "analysis"])
def test_packages_declare_their_public_names(package):
    mod = importlib.import_module(f"eigenscope.{package}")
    assert mod.__all__, package
    for name in mod.__all__:
        assert hasattr(mod, name), f"{package}.{name}"

"""The examples in the public docstrings run and print what they show."""
import doctest
import importlib

import pytest

MODULES = [
    "eigenscope", "eigenscope.analysis.runner", "eigenscope.analysis.summary", "eigenscope.linalg",
    "eigenscope.monitor", "eigenscope.nn.lowrank", "eigenscope.optim", "eigenscope.sources",
    "eigenscope.tune.singular", "eigenscope.compression.api", "eigenscope.plot", "eigenscope.report.api",
    "eigenscope.engines.many", "eigenscope.engines.resources",
    "eigenscope.nn.fuse", "eigenscope.nn.quant", "eigenscope.maths.quant", "eigenscope.compression.quantize",
    "eigenscope.compression.latency",
    "eigenscope.validate", "eigenscope._json",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0, f"{name} has no examples"
    assert res.failed == 0

"""Property-based fuzzing (hypothesis), a short budget: mutated safetensors, GGUF and torch .bin
files and Hugging Face folders (byte flips, truncations, JSON mutations of headers, indexes and
configs) through `eigenscope analyze` (folders also `evaluate`, `compress`), mutated saves
through `eigenscope.load`, and random command lines. Every case: exit code 0 or 2 (the loader:
a model or a one-line EigenscopeError), no traceback, no hang, nothing written outside the
output folder, the source unchanged (tests/_fuzz.py). benchmarks/fuzz.py runs 10,000 cases."""
from __future__ import annotations

import logging
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _fuzz import HypothesisDraw, file_case, make_seeds, new_workspace, remove_workspace
from _fuzz_cli import cli_case

# examples per target: about a minute in all on two shared cores
BUDGET = {"safetensors": 50, "gguf": 50, "bin": 40, "folder": 30, "save": 120, "cli": 50,
          "table": 10}
SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return make_seeds(tmp_path_factory.mktemp("fuzz-seeds"))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-cases")


def _check(target, seeds, root, data):
    ws = new_workspace(root)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.disable(logging.WARNING)
            d = HypothesisDraw(data)
            what, problems = cli_case(seeds, d, ws) if target == "cli" else file_case(target, seeds, d, ws)
    finally:
        logging.disable(logging.NOTSET)
        remove_workspace(ws)
    assert not problems, f"{what[:300]}: {problems}"


@settings(max_examples=BUDGET["safetensors"], **SETTINGS)
@given(data=st.data())
def test_fuzz_safetensors_reader(seeds, root, data):
    _check("safetensors", seeds, root, data)


@settings(max_examples=BUDGET["gguf"], **SETTINGS)
@given(data=st.data())
def test_fuzz_gguf_reader(seeds, root, data):
    _check("gguf", seeds, root, data)


@settings(max_examples=BUDGET["bin"], **SETTINGS)
@given(data=st.data())
def test_fuzz_torch_bin_reader(seeds, root, data):
    _check("bin", seeds, root, data)


@settings(max_examples=BUDGET["folder"], **SETTINGS)
@given(data=st.data())
def test_fuzz_hf_folders(seeds, root, data):
    _check("folder", seeds, root, data)


@settings(max_examples=BUDGET["table"], **SETTINGS)
@given(data=st.data())
def test_fuzz_saved_analyses(seeds, root, data):
    _check("table", seeds, root, data)


@settings(max_examples=BUDGET["save"], **SETTINGS)
@given(data=st.data())
def test_fuzz_save_loader(seeds, root, data):
    _check("save", seeds, root, data)


@settings(max_examples=BUDGET["cli"], **SETTINGS)
@given(data=st.data())
def test_fuzz_cli_arguments(seeds, root, data):
    _check("cli", seeds, root, data)


def test_the_properties_can_fail(seeds, root, monkeypatch):
    """The harness itself: a write beside the source, a hang and a traceback are all caught."""
    import shutil
    import time

    import _fuzz

    ws = new_workspace(root)
    src = ws / "m.safetensors"
    shutil.copy(seeds["safetensors"], src)
    beside = _fuzz.run_cli_case(["analyze", str(src), "--rows", "0", "--out", str(ws / "b.csv")], ws)
    assert any("outside the output folder" in p for p in beside)
    monkeypatch.setattr(_fuzz, "CASE_SECONDS", 0.5)
    monkeypatch.setattr("eigenscope.cli.app", lambda **kw: time.sleep(5))
    assert [p[:5] for p in _fuzz.run_cli_case(["analyze", str(src)], ws)] == ["hang:"]

    def noisy(**kw):
        import sys
        print("Traceback (most recent call last):", file=sys.stderr)

    monkeypatch.setattr("eigenscope.cli.app", noisy)
    assert _fuzz.run_cli_case(["analyze", str(src)], ws) == ["a traceback on stderr"]
    remove_workspace(ws)

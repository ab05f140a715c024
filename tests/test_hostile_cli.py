"""Classes 5, 6 and 7 at the command line: every bad option is one line naming it and exit code 2,
checked before any model is loaded; OS errors are one line too; anything unexpected is one
line pointing to a saved traceback (exit 1); `--debug` shows tracebacks; a FIFO never blocks."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import eigenscope
from _fixtures_hostile import assert_user_error, error_lines, run_cli
from eigenscope.errors import ArgumentError


@pytest.fixture()
def files(tmp_path, monkeypatch):
    """A small model file, a binary file, a folder; loading any model is made to fail loudly,
    so a case that reaches it shows that its option was checked too late."""
    model = tmp_path / "m.safetensors"
    save_file({"layers.0.mlp.up_proj.weight": torch.randn(24, 16)}, str(model))
    (tmp_path / "bin.dat").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "folder").mkdir()
    (tmp_path / "text.txt").write_text("some text " * 50)

    def heavy(*a, **k):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr("eigenscope.models.load_model", heavy)
    monkeypatch.setattr("eigenscope.sources.open_source", heavy)
    return tmp_path


COMPRESS = ["compress", "smollm2-135m", "--out", "{tmp}/out"]
# case -> (arguments with {tmp} and {m}, option the one line must name)
BAD_OPTIONS = {
    "device_banana": (["analyze", "{m}", "--device", "banana"], "--device"),
    "device_cuda_gpu_9": (["analyze", "{m}", "--device", "cuda:9"], "--device"),
    "workers_negative": (["analyze", "{m}", "--workers", "-1"], "--workers"),
    "workers_zero": (["analyze", "{m}", "--workers", "0"], "--workers"),
    "layers_bad_regex": (["analyze", "{m}", "--layers", "("], "--layers"),
    "metrics_unknown": (["analyze", "{m}", "--metrics", "bogus"], "--metrics"),
    "seed_negative": (["analyze", "{m}", "--seed", "-1"], "--seed"),
    "rows_below_minus_one": (["analyze", "{m}", "--rows", "-5"], "--rows"),
    "table_is_a_folder": (["analyze", "{m}", "--out", "{tmp}/folder"], "--out"),
    "table_suffix": (["analyze", "{m}", "--out", "{tmp}/rows.txt"], "--out"),
    "table_under_a_file": (["analyze", "{m}", "--out", "{tmp}/bin.dat/rows.csv"], "--out"),
    "spectra_suffix": (["analyze", "{m}", "--save-spectra", "{tmp}/s.npy"], "--save-spectra"),
    "ratio_zero": (COMPRESS + ["--ratio", "0"], "--ratio"),
    "ratio_one": (COMPRESS + ["--ratio", "1"], "--ratio"),
    "ratio_nan": (COMPRESS + ["--ratio", "nan"], "--ratio"),
    "seq_len_zero": (COMPRESS + ["--ratio", "0.5", "--seq-len", "0"], "--seq-len"),
    "multiple_zero": (COMPRESS + ["--ratio", "0.5", "--multiple", "0"], "--multiple"),
    "calib_seqs_one": (COMPRESS + ["--ratio", "0.5", "--calib-seqs", "1"], "--calib-seqs"),
    "allocation_energy_text": (COMPRESS + ["--ratio", "0.5", "--allocation", "energy:abc"], "--allocation"),
    "allocation_energy_5": (COMPRESS + ["--ratio", "0.5", "--allocation", "energy:5"], "--allocation"),
    "allocation_energy_0": (COMPRESS + ["--ratio", "0.5", "--allocation", "energy:0"], "--allocation"),
    "allocation_unknown": (COMPRESS + ["--ratio", "0.5", "--allocation", "best"], "--allocation"),
    "method_unknown": (COMPRESS + ["--ratio", "0.5", "--method", "magic"], "--method"),
    "compress_layers_regex": (COMPRESS + ["--ratio", "0.5", "--layers", "["], "--layers"),
    "calib_missing": (COMPRESS + ["--ratio", "0.5", "--calib", "{tmp}/nope.txt"], "--calib"),
    "calib_folder": (COMPRESS + ["--ratio", "0.5", "--calib", "{tmp}/folder"], "--calib"),
    "calib_binary": (COMPRESS + ["--ratio", "0.5", "--calib", "{tmp}/bin.dat"], "--calib"),
    "calib_name_too_long": (COMPRESS + ["--ratio", "0.5", "--calib", "x" * 5000], "--calib"),
    "table_name_too_long": (["analyze", "{m}", "--out", "{tmp}/" + "x" * 5000 + ".csv"], "--out"),
    "out_existing_file": (["compress", "smollm2-135m", "--ratio", "0.5", "--out", "{tmp}/bin.dat"], "--out"),
    "eval_seq_len_one": (["evaluate", "smollm2-135m", "--seq-len", "1"], "--seq-len"),
    "eval_max_tokens_zero": (["evaluate", "smollm2-135m", "--max-tokens", "0"], "--max-tokens"),
    "eval_skip_negative": (["evaluate", "smollm2-135m", "--skip-tokens", "-1"], "--skip-tokens"),
    "eval_text_binary": (["evaluate", "smollm2-135m", "--text", "{tmp}/bin.dat"], "--text"),
    "report_pdf": (["report", "{m}", "--out", "{tmp}/r.pdf"], "--out"),
    "report_plots_regex": (["report", "{m}", "--out", "{tmp}/r.html", "--plots", "a,("], "--plots"),
    "compare_k_zero": (["compare", "{m}", "{m}", "--k", "0"], "--k"),
    "compare_table_suffix": (["compare", "{m}", "{m}", "--table", "{tmp}/t.xlsx"], "--table"),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_option_is_one_line_exit_2_before_any_load(case, files):
    args, flag = BAD_OPTIONS[case]
    argv = [a.format(tmp=files, m=files / "m.safetensors") for a in args]
    line = assert_user_error(*run_cli(*argv)[::2], flag)
    assert "got" in line or "calib" in line or "text" in line


def test_the_api_uses_the_same_checks():
    net = torch.nn.Sequential(torch.nn.Linear(8, 8))
    cases = [(eigenscope.analyze, dict(workers=0), "workers"),
             (eigenscope.analyze, dict(device="banana"), "device"),
             (eigenscope.compress, dict(ratio=0.5, allocation="energy:5"), "allocation"),
             (eigenscope.compress, dict(ratio=1.5), "ratio"),
             (eigenscope.compress, dict(allocation="global"), "ratio"),
             (eigenscope.compress, dict(ratio=0.5, seq_len=0), "seq_len"),
             (eigenscope.evaluate, dict(max_tokens=0), "max_tokens")]
    for verb, kw, name in cases:
        with pytest.raises(ArgumentError, match=rf"^{name}: "):
            verb(net, **kw)


def test_a_module_on_the_meta_device_is_refused():
    with torch.device("meta"):
        net = torch.nn.Sequential(torch.nn.Linear(8, 8))
    for verb, kw in ((eigenscope.analyze, {}), (eigenscope.compress, dict(ratio=0.5))):
        with pytest.raises(ArgumentError, match="meta device"):
            verb(net, **kw)


def test_os_error_while_writing_is_one_line(tmp_path):
    model = tmp_path / "m.safetensors"
    save_file({"layers.0.mlp.up_proj.weight": torch.randn(24, 16)}, str(model))
    assert_user_error(*run_cli("analyze", model, "--out", "/proc/rows.csv", "--rows", "0")[::2],
                      "/proc/rows.csv")


def test_unexpected_error_is_one_line_with_the_traceback_saved(tmp_path, monkeypatch):
    model = tmp_path / "m.safetensors"
    save_file({"layers.0.mlp.up_proj.weight": torch.randn(24, 16)}, str(model))

    def bug(*a, **k):
        raise ZeroDivisionError("a bug of ours")

    monkeypatch.setattr("eigenscope.analysis.summary.summary", bug)
    code, _, err = run_cli("analyze", model, "--rows", "0")
    lines = error_lines(err)
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("eigenscope: internal error: ZeroDivisionError: a bug of ours, details in ")
    saved = Path(lines[0].rsplit("details in ", 1)[1])
    assert "Traceback" in saved.read_text() and "a bug of ours" in saved.read_text()
    saved.unlink()
    code, _, err = run_cli("--debug", "analyze", model, "--rows", "0")
    assert code == 1 and "Traceback" in err and "ZeroDivisionError" in err


def test_debug_shows_the_traceback_of_a_user_error(tmp_path):
    code, _, err = run_cli("analyze", tmp_path / "nope.safetensors", "--debug")
    assert code == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("eigenscope: error:")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _hf_folder(folder: Path, config=None) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(config or json.dumps(
        {"model_type": "llama", "hidden_size": 16, "intermediate_size": 32, "vocab_size": 32,
         "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
         "architectures": ["LlamaForCausalLM"]}))
    return folder


DEEP = "[" * 200_000 + "]" * 200_000


def _deep_header(path: Path) -> Path:
    header = ('{"__metadata__": {"x": "y"}, "a": ' + DEEP + "}").encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    return path


# case -> (maker of the source in tmp, commands run on it)
BAD_SOURCES = {
    "malicious_pickle_bin": (lambda t: _hf_folder(t / "hf").joinpath("pytorch_model.bin").write_bytes(
        pickle.dumps({"w": _Evil(t / "ran")})) and t / "hf", ("analyze", "compress", "evaluate")),
    "deep_config_json": (lambda t: (_hf_folder(t / "hf", DEEP), save_file(
        {"w.weight": torch.randn(4, 4)}, str(t / "hf" / "model.safetensors")))[0],
                         ("analyze", "compress", "evaluate")),
    "deep_safetensors_header": (lambda t: _deep_header(t / "d.safetensors"), ("analyze",)),
}
COMMANDS = {"analyze": ["analyze", "{src}"], "evaluate": ["evaluate", "{src}", "--max-tokens", "64"],
            "compress": ["compress", "{src}", "--ratio", "0.5", "--out", "{tmp}/out"]}


@pytest.mark.parametrize("case", sorted(BAD_SOURCES))
def test_bad_source_is_one_line_for_every_command(case, tmp_path):
    make, commands = BAD_SOURCES[case]
    src = make(tmp_path)
    for cmd in commands:
        argv = [a.format(src=src, tmp=tmp_path) for a in COMMANDS[cmd]]
        assert_user_error(*run_cli(*argv)[::2], str(src.name))
    assert not (tmp_path / "ran").exists()       # the pickle's code never ran
    assert not (tmp_path / "out").exists()


FIFO_SCRIPT = textwrap.dedent("""
    import os, sys, contextlib, io
    from eigenscope.cli import main
    tmp = sys.argv[1]
    os.mkfifo(f"{tmp}/model.gguf")
    os.mkdir(f"{tmp}/hf"); os.mkfifo(f"{tmp}/hf/model.safetensors")
    os.mkfifo(f"{tmp}/calib.txt")
    for argv in (["analyze", f"{tmp}/model.gguf"], ["analyze", f"{tmp}/hf"],
                 ["report", f"{tmp}/model.gguf", "--out", f"{tmp}/r.html"],
                 ["compress", f"{tmp}/hf", "--ratio", "0.5", "--out", f"{tmp}/o",
                  "--calib", f"{tmp}/calib.txt"]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(argv)
        print(code, err.getvalue().strip().splitlines()[-1], flush=True)
""")


def test_a_fifo_never_blocks(tmp_path):
    """Class 7, in a child process: a hang is observed as a timeout, not a stuck test run."""
    env = {**os.environ, "PYTHONPATH": str(Path(eigenscope.__file__).parents[1])}
    res = subprocess.run([sys.executable, "-c", FIFO_SCRIPT, str(tmp_path)], env=env, text=True,
                         capture_output=True, timeout=240)
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 4, res.stderr
    for line in lines:
        assert line.startswith("2 eigenscope: error: ") and "not a regular file" in line, line

"""The command line: exit code 2 and one line for bad input; files written for good input."""
import subprocess
import sys

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from eigenscope.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "eigenscope", *args], capture_output=True,
                          text=True, timeout=300)


def _one_line_error(res, needle):
    assert res.returncode == 2, res.stderr
    err = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(err) == 1 and needle in err[0], res.stderr
    assert "Traceback" not in res.stderr


def test_missing_path_is_one_line_exit_2(tmp_path):
    _one_line_error(run("analyze", str(tmp_path / "nope.safetensors")), "nope.safetensors")


def test_unknown_format_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "weights.xyz"
    bad.write_text("hello")
    _one_line_error(run("analyze", str(bad)), "weights.xyz")


def test_truncated_safetensors_is_one_line_exit_2(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"a.weight": torch.randn(40, 30)}, str(path))
    path.write_bytes(path.read_bytes()[:50])
    _one_line_error(run("analyze", str(path)), "model.safetensors")


def test_unknown_metric_is_one_line_exit_2(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"a.weight": torch.randn(40, 30)}, str(path))
    _one_line_error(run("analyze", str(path), "--metrics", "bogus"), "bogus")


def test_analyze_writes_the_table(tmp_path, capsys):
    path = tmp_path / "m.safetensors"
    save_file({"layers.0.mlp.up_proj.weight": torch.randn(64, 32),
               "layers.0.input_layernorm.weight": torch.ones(32)}, str(path))
    out = tmp_path / "rows.csv"
    assert main(["analyze", str(path), "--out", str(out), "--metrics", "norms,powerlaw"]) == 0
    df = pd.read_csv(out)
    assert df["name"].tolist() == ["layers.0.mlp.up_proj.weight"]
    assert df.loc[0, "role"] == "up" and df.loc[0, "block"] == 0
    assert "1 matrices" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--help"], ["analyze", "--help"], ["report", "--help"],
                                  ["compare", "--help"], ["compress", "--help"], ["evaluate", "--help"]])
def test_help_texts(args, capsys):
    assert main(args) == 0
    assert "Usage" in capsys.readouterr().out


def test_terminal_names_drop_the_common_prefix():
    from eigenscope.cli.analyze_cmd import _short_names

    names = ["model.layers.3.mlp.up_proj.weight", "model.layers.12.self_attn.q_proj.weight",
             "model.embed_tokens.weight"]
    assert _short_names(names) == ["layers.3.mlp.up_proj", "layers.12.self_attn.q_proj", "embed_tokens"]
    assert _short_names(["a.weight"]) == ["a"]


def _two_checkpoints(tmp_path):
    g = torch.Generator().manual_seed(0)
    a = {f"layers.{i}.mlp.up_proj.weight": torch.randn(64, 32, generator=g) for i in range(3)}
    b = {k: v.clone() for k, v in a.items()}
    b["layers.1.mlp.up_proj.weight"] += 0.3 * torch.randn(64, 32, generator=g)
    b["layers.3.mlp.up_proj.weight"] = torch.randn(64, 32, generator=g)      # only in B
    pa, pb = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file(a, str(pa))
    save_file(b, str(pb))
    return pa, pb


def test_report_and_compare_write_pages(tmp_path, capsys):
    pa, pb = _two_checkpoints(tmp_path)
    assert main(["report", str(pa), "--out", str(tmp_path / "r.html")]) == 0
    assert "<table" in (tmp_path / "r.html").read_text(encoding="utf-8")
    table = tmp_path / "cmp.csv"
    assert main(["compare", str(pa), str(pb), "--out", str(tmp_path / "c.html"),
                 "--table", str(table)]) == 0
    out = capsys.readouterr().out
    assert "3 matrices matched, 0 only in A, 1 only in B" in out
    df = pd.read_csv(table).set_index("name")
    assert df.loc["layers.0.mlp.up_proj.weight", "rel_change"] == 0
    assert df.loc["layers.1.mlp.up_proj.weight", "rel_change"] > 0.1
    # a saved analysis works as input too
    assert main(["analyze", str(pa), "--out", str(tmp_path / "a.csv"), "--rows", "0"]) == 0
    assert main(["report", str(tmp_path / "a.csv"), "--out", str(tmp_path / "r2.html")]) == 0


@pytest.mark.parametrize("args,needle", [
    (["report", "{a}", "--out", "{tmp}/r.pdf"], "r.pdf"),
    (["report", "{tmp}/missing.safetensors"], "missing.safetensors"),
    (["compare", "{a}", "{tmp}/missing.gguf"], "missing.gguf"),
])
def test_report_and_compare_bad_input(tmp_path, args, needle):
    pa, _ = _two_checkpoints(tmp_path)
    args = [x.format(a=pa, tmp=tmp_path) for x in args]
    _one_line_error(run(*args), needle)

"""`eigenscope activations`: a table from a model folder on disk, the report of it, and one-line
errors with exit code 2 for bad input. The model is a tiny Llama with a word-level tokenizer
saved by transformers (no hub, no download)."""
import subprocess
import sys

import pandas as pd
import pytest

from eigenscope.hidden_states import COLUMNS
from eigenscope.hidden_states.io import read_activations

tf = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
WORDS = ("the quick brown fox jumps over lazy dog and a cat sleeps on warm mat while "
         "birds sing in tall green trees").split()


def run(*args):
    return subprocess.run([sys.executable, "-m", "eigenscope", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import torch
    path = tmp_path_factory.mktemp("tiny-llama")
    vocab = {w: i for i, w in enumerate(["[UNK]", *WORDS])}
    tk = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tf.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]").save_pretrained(path)
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2)
    tf.LlamaForCausalLM(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "words.txt"
    rng = __import__("random").Random(0)
    path.write_text(" ".join(rng.choice(WORDS) for _ in range(3000)), encoding="utf-8")
    return path


def test_cli_writes_table_spectra_and_report(folder, text, tmp_path):
    out, page = tmp_path / "acts.safetensors", tmp_path / "acts.html"
    res = run("activations", str(folder), "--text", str(text), "--sites", "residual,mlp_hidden",
              "--max-tokens", "512", "--seq-len", "64", "--out", str(out), "--report", str(page))
    assert res.returncode == 0, res.stderr
    assert f"wrote 6 rows to {out}" in res.stdout
    df, spectra = read_activations(out)
    assert list(df.columns) == COLUMNS and len(df) == 6
    assert (df["tokens"] == 512).all() and set(df["site"]) == {"residual", "mlp_hidden"}
    assert sorted(len(v) for v in spectra.values()) == [32, 32, 32, 64, 64, 64]
    assert page.stat().st_size > 10_000 and "model.layers.2:mlp_hidden" in page.read_text()
    csv = tmp_path / "acts.csv"
    assert run("activations", str(folder), "--text", str(text), "--layers", "1",
               "--max-tokens", "128", "--seq-len", "64", "--out", str(csv)).returncode == 0
    back = pd.read_csv(csv)
    assert back["name"].tolist() == ["model.layers.1:residual"]
    again = tmp_path / "again.html"
    res = run("report", str(out), "-o", str(again))
    assert res.returncode == 0, res.stderr
    assert '"kind":"activations"' in again.read_text()


@pytest.mark.parametrize("extra,needle", [
    (["--text", "MISSING"], "no such text file"),
    (["--sites", "mlp"], "unknown site 'mlp'"),
    (["--out", "acts.xlsx"], "acts.xlsx"),
    (["--layers", "one"], "--layers"),
    (["--max-tokens", "0"], "--max-tokens"),
    (["--text", "EMPTY"], "empty"),
])
def test_cli_bad_input_one_line_exit_2(folder, text, tmp_path, extra, needle, capsys):
    # checked before the model is loaded: in process, nothing else is printed
    from eigenscope.cli import main
    (tmp_path / "EMPTY").write_text("  \n")
    args = ["activations", str(folder), "--text", str(text), "--out", str(tmp_path / "t.csv")]
    args += [str(tmp_path / a) if a in ("MISSING", "EMPTY", "acts.xlsx") else a for a in extra]
    assert main(args) == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip()]
    assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "t.csv").exists()


def test_cli_errors_found_after_loading(folder, text, tmp_path):
    # the model is loaded before these are known; libraries may log while loading, so the
    # check is: exactly one eigenscope error line, exit 2, no traceback
    for args, needle in ((["--layers", "7"], "no site to read"),
                         (["--seq-len", "4096"], "too short")):
        res = run("activations", str(folder), "--text", str(text), "--out",
                  str(tmp_path / "t.csv"), *args)
        errs = [ln for ln in res.stderr.splitlines() if ln.startswith("eigenscope: error:")]
        assert res.returncode == 2 and len(errs) == 1 and needle in errs[0], res.stderr
        assert "Traceback" not in res.stderr
    res = run("activations", str(tmp_path / "nope"), "--out", str(tmp_path / "t.csv"))
    assert res.returncode == 2 and "nope" in res.stderr and "Traceback" not in res.stderr

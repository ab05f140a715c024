"""GGUF sources: name mapping, (out, in) layout, K-quant blocks built by hand, the real SmolLM2."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from _fixtures_sources import save_gguf
from eigenscope.errors import SourceError
from eigenscope.sources import open_source
from eigenscope.sources.builtin import resolve_builtin
from eigenscope.sources.matrices import iter_matrices, plan_matrices
from eigenscope.sources.names import gguf_to_hf

gguf = pytest.importorskip("gguf")


@pytest.mark.parametrize("name, arch, hf", [
    ("token_embd.weight", "llama", "model.embed_tokens.weight"),
    ("output.weight", "llama", "lm_head.weight"),
    ("output_norm.weight", "llama", "model.norm.weight"),
    ("blk.12.attn_q.weight", "llama", "model.layers.12.self_attn.q_proj.weight"),
    ("blk.0.attn_k.weight", "llama", "model.layers.0.self_attn.k_proj.weight"),
    ("blk.0.attn_v.weight", "llama", "model.layers.0.self_attn.v_proj.weight"),
    ("blk.0.attn_output.weight", "llama", "model.layers.0.self_attn.o_proj.weight"),
    ("blk.3.ffn_gate.weight", "llama", "model.layers.3.mlp.gate_proj.weight"),
    ("blk.3.ffn_up.weight", "llama", "model.layers.3.mlp.up_proj.weight"),
    ("blk.3.ffn_down.weight", "llama", "model.layers.3.mlp.down_proj.weight"),
    ("blk.3.attn_norm.weight", "llama", "model.layers.3.input_layernorm.weight"),
    ("blk.3.ffn_norm.weight", "llama", "model.layers.3.post_attention_layernorm.weight"),
    ("blk.3.ffn_down_exps.weight", "llama", "model.layers.3.mlp.experts.down_proj.weight"),
    ("token_embd.weight", "bert", "embeddings.word_embeddings.weight"),
    ("blk.1.attn_q.weight", "bert", "encoder.layer.1.attention.self.query.weight"),
    ("blk.1.attn_output.weight", "bert", "encoder.layer.1.attention.output.dense.weight"),
    ("blk.1.ffn_up.bias", "bert", "encoder.layer.1.intermediate.dense.bias"),
    ("blk.1.ffn_down.weight", "bert", "encoder.layer.1.output.dense.weight"),
    ("blk.1.layer_output_norm.weight", "bert", "encoder.layer.1.output.LayerNorm.weight"),
    ("rope_freqs.weight", "llama", "rope_freqs.weight"),  # unknown: unchanged
])
def test_gguf_names_map_to_hf(name, arch, hf):
    from eigenscope.sources.names import gguf_to_hf
    assert gguf_to_hf(name, arch) == hf


_BERT = {"embeddings.word_embeddings.weight": "token_embd.weight",
         "encoder.layer.0.attention.self.query.weight": "blk.0.attn_q.weight",
         "encoder.layer.0.attention.output.dense.weight": "blk.0.attn_output.weight",
         "encoder.layer.0.intermediate.dense.weight": "blk.0.ffn_up.weight",
         "encoder.layer.0.output.dense.weight": "blk.0.ffn_down.weight",
         "encoder.layer.0.output.LayerNorm.weight": "blk.0.layer_output_norm.weight"}


def test_bert_gguf_rows_match_hf_bert_names(tmp_path):
    shapes = [(50, 32), (32, 32), (32, 32), (64, 32), (32, 64), (32,)]
    sd = {k: torch.randn(s) for k, s in zip(_BERT, shapes)}
    path = save_gguf(sd, tmp_path / "bert.gguf", "F16", arch="bert", names=_BERT.__getitem__)
    with open_source(path) as src:
        rows = {m.name: (m, W) for m, W in iter_matrices(src)}
    assert sorted(rows) == sorted(k for k in _BERT if "LayerNorm" not in k)
    assert [rows[k][0].role for k in list(_BERT)[:5]] == ["embed", "q", "o", "up", "down"]
    for name, (meta, W) in rows.items():
        assert meta.dtype == "float16"
        torch.testing.assert_close(W, sd[name].half().float())


def test_gguf_moe_experts_in_out_in_layout(tmp_path):
    w = torch.randn(4, 6, 32)  # (experts, out, in)
    path = save_gguf({"x": w}, tmp_path / "moe.gguf", names=lambda n: "blk.0.ffn_up_exps.weight")
    with open_source(path) as src:
        rows = list(iter_matrices(src))
    assert [m.name for m, _ in rows] == [
        f"model.layers.0.mlp.experts.up_proj.weight.expert{e}" for e in range(4)]
    for meta, W in rows:
        assert meta.role == "up" and meta.shape == "4x6x32"
        torch.testing.assert_close(W, w[meta.expert])


# --- K-quants: gguf cannot quantise them; build blocks by hand from the ggml block layouts ---
def _f16(x):
    return np.frombuffer(np.float16(x).tobytes(), np.uint8)


def _q4_k(d):  # d f16, dmin f16, 12 packed 6-bit scales/mins (all scales 1, mins 0), 128 qs
    scales = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1], np.uint8)
    return np.concatenate([_f16(d), _f16(0), scales, np.full(128, 0x53, np.uint8)])


def _q5_k(d):  # as Q4_K plus 32 bytes of 5th bits (all set: +16), before the 128 qs
    scales = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1], np.uint8)
    return np.concatenate([_f16(d), _f16(0), scales, np.full(32, 0xFF, np.uint8),
                           np.full(128, 0x53, np.uint8)])


def _q6_k(d):  # 128 low-4-bit bytes, 64 high-2-bit bytes (0), 16 int8 scales (1), d f16
    return np.concatenate([np.full(128, 0x53, np.uint8), np.zeros(64, np.uint8),
                           np.ones(16, np.uint8), _f16(d)])


# Values of one 256-wide block with scale d, from the ggml dequantisation loops:
# Q4_K/Q5_K: each 64-run = 32 low nibbles then 32 high nibbles; Q6_K: each 128-half = 64 x
# (low nibble - 32) then 64 x (high nibble - 32).
_KQUANTS = {
    "Q4_K": (_q4_k, lambda d: d * np.tile(np.repeat([3.0, 5.0], 32), 4)),
    "Q5_K": (_q5_k, lambda d: d * np.tile(np.repeat([19.0, 21.0], 32), 4)),
    "Q6_K": (_q6_k, lambda d: d * np.tile(np.repeat([-29.0, -27.0], 64), 2)),
}


@pytest.mark.parametrize("qtype", list(_KQUANTS))
def test_k_quant_blocks_dequantised_in_out_in_layout(qtype, tmp_path):
    block, values = _KQUANTS[qtype]
    rows, blocks = 3, 2  # a (3, 512) matrix: block b of row r has scale d = (2r + b + 1) / 4
    d = [[(2 * r + b + 1) / 4 for b in range(blocks)] for r in range(rows)]
    raw = np.stack([np.concatenate([block(d[r][b]) for b in range(blocks)]) for r in range(rows)])
    expected = np.stack([np.concatenate([values(d[r][b]) for b in range(blocks)])
                         for r in range(rows)])
    qt = gguf.GGMLQuantizationType[qtype]
    w = gguf.GGUFWriter(str(tmp_path / "k.gguf"), "llama")
    w.add_tensor("blk.0.attn_q.weight", raw, raw_shape=raw.shape, raw_dtype=qt)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    with open_source(tmp_path / "k.gguf") as src:
        (meta, W), = iter_matrices(src)
    assert (meta.dtype, meta.rows, meta.cols, meta.role) == (qtype, 3, 512, "q")
    np.testing.assert_array_equal(W.numpy(), expected.astype(np.float32))


def test_unsupported_gguf_type_is_a_row_status_not_an_error(tmp_path, monkeypatch):
    from eigenscope.sources import gguf_file
    path = save_gguf({"model.layers.0.self_attn.q_proj.weight": torch.randn(4, 32),
                      "model.layers.0.self_attn.k_proj.weight": torch.randn(4, 32)},
                     tmp_path / "u.gguf", "Q8_0")
    monkeypatch.setattr(gguf_file, "SUPPORTED", {"F32"})
    with open_source(path) as src:
        rows = list(iter_matrices(src))
        assert [(m.problem[0], W.numel()) for m, W in rows] == [("unsupported", 0)] * 2
        assert "Q8_0" in rows[0][0].problem[1]
        with pytest.raises(SourceError, match=r"u\.gguf.*Q8_0"):   # read directly: one line
            src.read(rows[0][0].name)


# --- the real SmolLM2-135M file (Q4_1 blocks, Q8_0 embedding) ---
@pytest.fixture(scope="module")
def smollm2():
    """The built-in file, opened once (parsing its tokenizer metadata takes seconds)."""
    try:
        resolve_builtin("smollm2-135m")
    except SourceError as e:
        pytest.skip(str(e))
    with open_source("smollm2-135m") as src:
        yield src


def _raw(src, hf_name):
    t = next(t for t in src.header.tensors if gguf_to_hf(t.name, src.arch) == hf_name)
    return t.type_name, np.asarray(src.raw(hf_name))  # (rows, bytes per row), uint8


def _deq_q8_0(raw):  # blocks of 34 bytes: d f16, 32 x int8; y = d * q
    b = raw.reshape(raw.shape[0], -1, 34)
    d = b[..., :2].copy().view(np.float16).astype(np.float32)
    return (d * b[..., 2:].copy().view(np.int8)).reshape(raw.shape[0], -1)


def _deq_q4_1(raw):  # blocks of 20 bytes: d f16, m f16, 16 bytes; y = d*q + m, low nibbles first
    b = raw.reshape(raw.shape[0], -1, 20)
    d = b[..., 0:2].copy().view(np.float16).astype(np.float32)
    m = b[..., 2:4].copy().view(np.float16).astype(np.float32)
    q = np.concatenate([b[..., 4:] & 0xF, b[..., 4:] >> 4], axis=-1).astype(np.float32)
    return (d * q + m).reshape(raw.shape[0], -1)


def llama_cpp_permute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """What llama.cpp's converter does to q/k rows: per head, [first half; second half] -> interleaved."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, w.shape[1]).transpose(1, 2).reshape(w.shape)


def test_llama_gguf_q_k_rows_are_back_in_hf_order(tmp_path):
    sd = {"q": torch.randn(32, 16), "k": torch.randn(16, 16), "v": torch.randn(16, 16)}
    w = gguf.GGUFWriter(str(tmp_path / "l.gguf"), "llama")
    w.add_head_count(4)
    w.add_head_count_kv(2)  # GQA: k has 2 heads of 8 rows
    w.add_tensor("blk.0.attn_q.weight", llama_cpp_permute(sd["q"], 4).numpy())
    w.add_tensor("blk.0.attn_k.weight", llama_cpp_permute(sd["k"], 2).numpy())
    w.add_tensor("blk.0.attn_v.weight", sd["v"].numpy())
    for write in (w.write_header_to_file, w.write_kv_data_to_file, w.write_tensors_to_file, w.close):
        write()
    with open_source(tmp_path / "l.gguf") as src:
        got = {m.role: W for m, W in iter_matrices(src)}
    for role in "qkv":
        assert torch.equal(got[role], sd[role])


@pytest.mark.real_model
def test_smollm2_q_k_equal_transformers_loading(smollm2):
    """transformers un-permutes q/k when it loads a GGUF; our rows must be the same matrices."""
    from eigenscope.models import load_model
    model, _ = load_model("smollm2-135m")
    sd = model.state_dict()
    names = [f"model.layers.{b}.self_attn.{p}_proj.weight" for b in (0, 29) for p in "qkv"]
    for name in names:
        assert torch.equal(smollm2.read(name), sd[name]), name


@pytest.mark.real_model
def test_smollm2_rows(smollm2):
    plan = plan_matrices(smollm2)
    assert len(plan) == 30 * 7 + 1 == 211  # no output.weight: the head is tied to the embedding
    assert plan[0].name == "model.embed_tokens.weight" and plan[0].dtype == "Q8_0"
    assert (plan[0].rows, plan[0].cols, plan[0].shape) == (49152, 576, "49152x576")
    shapes = {"q": (576, 576), "k": (192, 576), "v": (192, 576), "o": (576, 576),
              "gate": (1536, 576), "up": (1536, 576), "down": (576, 1536)}
    hf = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
          "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
          "down": "mlp.down_proj"}
    want = [(f"model.layers.{b}.{hf[r]}.weight", b, r, shapes[r]) for b in range(30) for r in hf]
    assert [(m.name, m.block, m.role, (m.rows, m.cols)) for m in plan[1:]] == want
    assert {m.dtype for m in plan[1:]} == {"Q4_1"}


@pytest.mark.real_model
@pytest.mark.parametrize("gguf_name, hf_name, deq, nrows", [
    ("blk.0.attn_k.weight", "model.layers.0.self_attn.k_proj.weight", _deq_q4_1, 192),
    ("token_embd.weight", "model.embed_tokens.weight", _deq_q8_0, 49152),
])
def test_smollm2_dequantisation_matches_the_block_format(smollm2, gguf_name, hf_name, deq, nrows):
    qtype, raw = _raw(smollm2, hf_name)
    (meta, W), = iter_matrices(smollm2, layers=rf"^{hf_name}$")
    assert meta.dtype == qtype and W.shape == (nrows, 576)
    if "k_proj" in hf_name:  # back to the file's rotary row order (3 kv heads) to compare bytes
        W = llama_cpp_permute(W, 3)
    rows = slice(0, 64)  # an independent decoding of the first rows' bytes
    np.testing.assert_allclose(W[rows].numpy(), deq(raw[rows]), rtol=1e-6, atol=1e-7)

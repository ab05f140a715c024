"""One naming per model: a module read under its checkpoint's names, checked against what
transformers' own save_pretrained writes; the map that fills a weightless skeleton; GGUF files
of MoE models named and split like their checkpoints."""
from __future__ import annotations

import pytest
import torch

from _fixtures_architectures import BY_NAME, CASES
from eigenscope.errors import EigenscopeError
from eigenscope.sources import open_source
from eigenscope.sources.matrices import iter_matrices, plan_matrices
from eigenscope.sources.naming import checkpoint_map

transformers = pytest.importorskip("transformers")
HF = [c.name for c in CASES if c.kind not in ("features", "images")]


def _saved(model, folder):
    from safetensors.torch import load_file
    model.save_pretrained(folder)
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("name", HF)
def test_module_reads_exactly_what_save_pretrained_writes(name, tmp_path):
    model = BY_NAME[name].model()
    stored = _saved(model, tmp_path)
    src = open_source(model)
    params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    owner = {p.checkpoint: p.parameter for p in checkpoint_map(model).pieces}
    assert set(owner) == set(stored)
    assert {i.name for i in src.tensors()} == {k for k in stored if owner[k] in params}  # no buffers
    for info in src.tensors():
        assert torch.equal(src.read(info.name), stored[info.name]), info.name


def test_fused_experts_are_views_of_their_parameter():
    """Mixtral's gate_up_proj (experts, 2*inter, hidden) holds w1 then w3 of every expert."""
    model = BY_NAME["mixtral"].model()
    cmap = checkpoint_map(model)
    fused = "model.layers.1.mlp.experts.gate_up_proj"
    names = cmap.checkpoint_names(fused)
    assert names == [f"model.layers.1.block_sparse_moe.experts.{e}.w{w}.weight"
                     for w in (1, 3) for e in range(4)]
    p = model.get_parameter(fused)
    inter = p.shape[1] // 2
    for piece in cmap.pieces_of(fused):
        e, w = int(piece.checkpoint.split(".")[5]), piece.checkpoint.split(".")[6]
        want = p[e, :inter] if w == "w1" else p[e, inter:]
        view = piece.view(p.detach())
        assert torch.equal(view, want) and view.data_ptr() == want.data_ptr()  # no copy
    assert cmap.checkpoint_names("lm_head.weight") == ["lm_head.weight"]


@pytest.mark.parametrize("name", HF)
def test_fill_rebuilds_a_model_from_its_checkpoint_through_a_meta_skeleton(name, tmp_path):
    """What a block-by-block loader does: the map of the config alone, each parameter filled
    from checkpoint tensors, ties restored by the model; bit-identical to the original."""
    model = BY_NAME[name].model()
    stored = _saved(model, tmp_path)
    cmap = checkpoint_map(model.config)
    assert sorted(p.checkpoint for p in cmap.pieces) == sorted(stored)
    fresh = type(model)(model.config)
    target = fresh.state_dict()
    filled = {n: cmap.fill(n, torch.empty_like(target[n]), stored.__getitem__)
              for n in cmap.parameters()}
    fresh.load_state_dict(filled, strict=False)
    fresh.tie_weights()
    want = model.state_dict()
    assert set(cmap.parameters()) | set(cmap.tied) >= set(dict(model.named_parameters()))
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, want[k]), k


def test_tied_parameters_are_stored_once_under_the_kept_name():
    cmap = checkpoint_map(BY_NAME["t5"].model())
    assert cmap.tied["encoder.embed_tokens.weight"] == "shared.weight"
    assert cmap.tied["decoder.embed_tokens.weight"] == "shared.weight"
    with pytest.raises(EigenscopeError, match="not stored in the checkpoint .tied to shared.weight"):
        cmap.fill("encoder.embed_tokens.weight", torch.empty(64, 32), lambda n: None)


def test_a_plain_module_maps_to_itself_and_lists_shared_weights_once():
    net = torch.nn.Sequential(torch.nn.Embedding(5, 4), torch.nn.Linear(4, 5, bias=False))
    net[1].weight = net[0].weight
    cmap = checkpoint_map(net)
    assert [(p.checkpoint, p.parameter, p.whole) for p in cmap.pieces] == [("0.weight", "0.weight", True)]
    assert cmap.tied == {"1.weight": "0.weight"}


def test_a_conversion_that_computes_is_read_through_transformers_and_refused_by_fill(tmp_path):
    """Dinov2's SwiGLU stores gate and up concatenated as one `weights_in`: not a view."""
    cfg = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                    image_size=16, patch_size=4, use_swiglu_ffn=True)
    torch.manual_seed(0)
    model = transformers.Dinov2Model(cfg).eval()
    stored = _saved(model, tmp_path)
    computed = [p for p in checkpoint_map(model).pieces if p.stride is None]
    assert sorted(p.checkpoint for p in computed) == ["encoder.layer.0.mlp.weights_in.bias",
                                                      "encoder.layer.0.mlp.weights_in.weight"]
    src = open_source(model)
    for p in computed:
        assert torch.equal(src.read(p.checkpoint), stored[p.checkpoint])
    rows_m = [m.name for m in plan_matrices(src)]
    assert rows_m == [m.name for m in plan_matrices(open_source(tmp_path))]
    with pytest.raises(EigenscopeError, match="computed from several parameters"):
        computed[0].view(torch.empty(1))


def test_a_conversion_transformers_cannot_revert_keeps_module_names_with_a_warning(monkeypatch):
    import transformers.core_model_loading as cml

    def refuse(model, state_dict):
        raise ValueError("Cannot reverse the transform with TP or quantization")

    monkeypatch.setattr(cml, "revert_weight_conversion", refuse)
    model = BY_NAME["mixtral"].model()
    with pytest.warns(UserWarning, match="cannot revert its weight conversions .ValueError"):
        names = [i.name for i in open_source(model).tensors()]
    assert "model.layers.0.mlp.experts.gate_up_proj" in names


def test_a_model_loaded_by_transformers_reads_as_the_folder_it_came_from(tmp_path):
    BY_NAME["qwen2-moe"].model().save_pretrained(tmp_path)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert ([m.name for m in plan_matrices(open_source(loaded))]
            == [m.name for m in plan_matrices(open_source(tmp_path))])


def test_rows_are_ordered_by_name_alone_encoder_first():
    from eigenscope.sources.base import Source, TensorInfo

    class Listed(Source):
        def __init__(self, names):
            self.names = names

        def tensors(self):
            return [TensorInfo(n, (4, 4), "float32") for n in self.names]

    names = ["decoder.block.0.layer.0.SelfAttention.q.weight",
             "encoder.block.1.layer.0.SelfAttention.q.weight", "shared.weight",
             "encoder.block.0.layer.1.DenseReluDense.wo.weight",
             "encoder.block.0.layer.0.SelfAttention.q.weight"]
    want = ["shared.weight", "encoder.block.0.layer.0.SelfAttention.q.weight",
            "encoder.block.0.layer.1.DenseReluDense.wo.weight",
            "encoder.block.1.layer.0.SelfAttention.q.weight",
            "decoder.block.0.layer.0.SelfAttention.q.weight"]
    for order in (names, names[::-1], sorted(names)):
        assert [m.name for m in plan_matrices(Listed(order))] == want


# --- GGUF files of MoE models, written the way llama.cpp's converter writes them -------------
# An independent table (not eigenscope's): checkpoint module path -> GGUF name, per arch.
_GGUF_BLOCK = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm", "block_sparse_moe.gate": "ffn_gate_inp",
    "mlp.gate": "ffn_gate_inp", "mlp.shared_expert.gate_proj": "ffn_gate_shexp",
    "mlp.shared_expert.up_proj": "ffn_up_shexp", "mlp.shared_expert.down_proj": "ffn_down_shexp",
    "mlp.shared_expert_gate": "ffn_gate_inp_shexp"}
_GGUF_EXPERTS = {"w1": "ffn_gate_exps", "w3": "ffn_up_exps", "w2": "ffn_down_exps",
                 "gate_proj": "ffn_gate_exps", "up_proj": "ffn_up_exps",
                 "down_proj": "ffn_down_exps"}
_GGUF_TOP = {"model.embed_tokens.weight": "token_embd.weight",
             "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}


def _rope_permute(w, heads):  # llama.cpp's q/k row order for "llama" files
    return w.reshape(heads, 2, w.shape[0] // heads // 2, w.shape[1]).transpose(1, 2).reshape(w.shape)


def _write_gguf(stored: dict, config, path, arch: str):
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(config.num_hidden_layers)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_context_length(64)
    n_exp = getattr(config, "num_local_experts", None) or config.num_experts
    w.add_expert_count(n_exp)
    stacks: dict = {}
    for k, t in stored.items():
        if k in _GGUF_TOP:
            w.add_tensor(_GGUF_TOP[k], t.numpy())
            continue
        parts = k.split(".")
        layer, path_, kind = parts[2], ".".join(parts[3:-1]), parts[-1]
        if ".experts." in k:
            e, proj = int(parts[-3]), parts[-2]
            stacks.setdefault(f"blk.{layer}.{_GGUF_EXPERTS[proj]}.{kind}", {})[e] = t
            continue
        if arch == "llama" and path_ in ("self_attn.q_proj", "self_attn.k_proj") and kind == "weight":
            heads = config.num_attention_heads if "q_proj" in path_ else config.num_key_value_heads
            t = _rope_permute(t, heads)
        if path_ == "mlp.shared_expert_gate":
            t = t.reshape(-1)  # llama.cpp stores this (1, hidden) router as a vector
        w.add_tensor(f"blk.{layer}.{_GGUF_BLOCK[path_]}.{kind}", t.numpy())
    for name, experts in stacks.items():
        w.add_tensor(name, torch.stack([experts[e] for e in sorted(experts)]).numpy())
    for write in (w.write_header_to_file, w.write_kv_data_to_file, w.write_tensors_to_file, w.close):
        write()
    return path


@pytest.mark.parametrize("name, arch", [("mixtral", "llama"), ("qwen2-moe", "qwen2moe")])
def test_moe_gguf_rows_are_the_checkpoints_per_expert_rows(name, arch, tmp_path):
    pytest.importorskip("gguf")
    model = BY_NAME[name].model()
    stored = _saved(model, tmp_path)
    path = _write_gguf(stored, model.config, tmp_path / "m.gguf", arch)
    with open_source(path) as g, open_source(tmp_path) as f, open_source(model) as m:
        rows = [[x.name for x in plan_matrices(s)] for s in (g, f, m)]
        assert rows[0] == rows[1] == rows[2]
        assert any(".experts.3." in r for r in rows[0])
        for meta, W in iter_matrices(g):
            assert torch.equal(W, stored[meta.name].float()), meta.name

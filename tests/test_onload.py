"""Models larger than memory: compress from disk block by block, stream saves and loads,
analyze under a memory budget. Correctness only here; memory and time are measured by
benchmarks/scale.py in child processes."""
from __future__ import annotations

import json

import pytest
import torch

import eigenscope
from eigenscope.analysis.batches import BATCH_BYTES, BATCH_MAX, plan_batches, working_bytes
from eigenscope.errors import EigenscopeError
from eigenscope.nn.lowrank import LowRankLinear
from eigenscope.sources.matrices import plan_matrices
from eigenscope.sources import open_source

V = 64


def tiny_llama(seed=0, tie=False, blocks=3):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=V, hidden_size=48, intermediate_size=96, num_hidden_layers=blocks,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie)
    return LlamaForCausalLM(cfg).eval()


def ids(n=16, t=24, seed=1):
    return torch.randint(0, V, (n, t), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny Llama saved as sharded float32 safetensors (several shards)."""
    path = tmp_path_factory.mktemp("src") / "llama"
    tiny_llama().save_pretrained(path, max_shard_size="60KB")
    assert len(list(path.glob("*.safetensors"))) > 1
    return path


def _factors(model):
    return {n: (m.up.weight.detach(), m.down.weight.detach())
            for n, m in model.named_modules() if isinstance(m, LowRankLinear)}


@pytest.mark.parametrize("method", ["whiten", "svd", "asvd", "fwsvd"])
def test_disk_and_memory_paths_give_the_same_factors(folder, method):
    kw = dict(ratio=0.3, method=method, calibration=ids(), multiple=1, batch_size=4)
    a, plan_a = eigenscope.compress(tiny_llama(), **kw)
    b, plan_b = eigenscope.compress(folder, **kw)
    assert plan_a["rank"].fillna(-1).tolist() == plan_b["rank"].fillna(-1).tolist()
    fa, fb = _factors(a), _factors(b)
    assert fa.keys() == fb.keys() and fa
    for n in fa:
        for x, y in zip(fa[n], fb[n]):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    assert set(plan_b.attrs["block_seconds"]) >= {"model.layers.0", "model.layers.2"}


def test_streamed_output_loads_back_to_the_same_model(folder, tmp_path):
    kw = dict(ratio=0.3, calibration=ids(), multiple=1, batch_size=4)
    ref, _ = eigenscope.compress(tiny_llama(), **kw)
    out, plan = eigenscope.compress(folder, out=tmp_path / "c", **kw)
    assert out == tmp_path / "c"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["metadata"]["eigenscope_format"] and set(index["weight_map"].values())
    assert not list(out.glob(".*.tmp"))
    back = eigenscope.load(out)
    assert type(back).__name__ == "LlamaForCausalLM"
    x = ids(2, 12, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(back(x).logits, ref(x).logits, rtol=1e-4, atol=1e-5)
    assert plan.attrs["model_params"] == sum(p.numel() for p in ref.parameters())


def test_offloading_under_a_tiny_budget_changes_nothing(folder, tmp_path):
    """max_memory far below the activations: they go to the offload folder, which is removed
    afterwards, and the factors are the same."""
    kw = dict(ratio=0.3, calibration=ids(), multiple=1, batch_size=4)
    a, _ = eigenscope.compress(folder, **kw)
    off = tmp_path / "offload"
    b, _ = eigenscope.compress(folder, max_memory="8KB", offload_dir=off, **kw)
    for n, (x, y) in _factors(a).items():
        torch.testing.assert_close(x, _factors(b)[n][0])
    assert off.is_dir() and not list(off.iterdir())


def test_stats_cache_reuses_curves_across_ratios(folder):
    cache = eigenscope.compression.StatsCache()
    kw = dict(calibration=ids(), multiple=1, batch_size=4, cache=cache)
    _, p1 = eigenscope.compress(tiny_llama(), ratio=0.2, **kw)
    assert cache.curves
    _, p2 = eigenscope.compress(tiny_llama(), ratio=0.4, **kw)
    _, p3 = eigenscope.compress(tiny_llama(), ratio=0.4, calibration=ids(), multiple=1, batch_size=4)
    assert p2["rank"].fillna(-1).tolist() == p3["rank"].fillna(-1).tolist()
    assert p1["params_after"].sum() > p2["params_after"].sum()
    cache.close()


def test_bad_sources_fail_with_one_line(folder, tmp_path):
    import shutil
    bad = tmp_path / "missing"
    shutil.copytree(folder, bad)
    shard = sorted(bad.glob("*.safetensors"))[0]
    shard.unlink()
    with pytest.raises(EigenscopeError, match=shard.name):
        eigenscope.compress(bad, ratio=0.3, calibration=ids())
    wrong = tmp_path / "wrong"
    shutil.copytree(folder, wrong)
    cfg = json.loads((wrong / "config.json").read_text())
    cfg["intermediate_size"] = 80
    (wrong / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(EigenscopeError, match="shape"):
        eigenscope.compress(wrong, ratio=0.3, calibration=ids())


def test_a_full_disk_leaves_nothing_that_looks_complete(folder, tmp_path, monkeypatch):
    """The disk fills while the index is written: one-line error, no index, no temp files."""
    import errno

    from eigenscope.compression import io

    real = io.atomic_write

    def full(path, write):
        if str(path).endswith(".index.json"):
            def broken(tmp):
                write(tmp)
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, broken)
        return real(path, write)

    monkeypatch.setattr(io, "atomic_write", full)
    out = tmp_path / "c"
    with pytest.raises(EigenscopeError, match="No space left"):
        eigenscope.compress(folder, ratio=0.3, calibration=ids(), out=out)
    assert not (out / "model.safetensors.index.json").exists()
    assert not list(out.glob(".*.tmp"))
    with pytest.raises(EigenscopeError, match="not written by eigenscope"):
        eigenscope.load(out)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EigenscopeError, match=r"^out: cannot be created: .*file is not a folder"):
        eigenscope.compress(folder, ratio=0.3, calibration=ids(), out=blocker / "sub")


def test_analyze_under_a_tiny_budget_gives_the_same_rows(folder):
    full = eigenscope.analyze(folder, metrics="norms,powerlaw")
    with pytest.warns(UserWarning, match="one at a time"):
        small = eigenscope.analyze(folder, metrics="norms,powerlaw", max_memory="1KB")
    assert list(full["name"]) == list(small["name"])
    torch.testing.assert_close(torch.tensor(full["alpha"].to_numpy()),
                               torch.tensor(small["alpha"].to_numpy()), equal_nan=True)


@pytest.mark.parametrize("limit", [10**4, 10**6, 10**9])
def test_batches_are_same_shape_and_within_the_cap(folder, limit):
    plan = plan_matrices(open_source(folder))
    groups = ("norms", "randomize")
    batches = plan_batches(plan, groups, limit=limit, workers=2)
    assert sorted(m.name for b, _ in batches for m in b) == sorted(m.name for m in plan)
    for metas, cost in batches:
        assert len({(m.rows, m.cols) for m in metas}) == 1 and len(metas) <= BATCH_MAX
        assert cost == sum(working_bytes(m, groups) for m in metas)
        assert len(metas) == 1 or cost <= limit // 3
        assert len(metas) == 1 or 4 * sum(m.numel for m in metas) <= BATCH_BYTES


@pytest.mark.parametrize("arch", ["gpt2", "mixtral", "qwen3"])
def test_disk_path_matches_memory_path_across_architectures(arch, tmp_path):
    """GPT-2's Conv1D, Mixtral's fused experts (renamed on load, kept dense) and Qwen3 from
    their saved folders: the same plan and outputs as the in-memory path."""
    from _fixtures_architectures import BY_NAME, V as VOCAB

    case = BY_NAME[arch]
    case.model().save_pretrained(tmp_path / arch)
    calib = torch.randint(0, VOCAB, (8, 16), generator=torch.Generator().manual_seed(3))
    kw = dict(ratio=0.3, calibration=calib, multiple=1, batch_size=4)
    a, pa = eigenscope.compress(case.model(), **kw)
    out, pb = eigenscope.compress(tmp_path / arch, out=tmp_path / "c", **kw)
    assert pa["rank"].fillna(-1).tolist() == pb["rank"].fillna(-1).tolist()
    assert list(pa["reason"]) == list(pb["reason"])
    b = eigenscope.load(out)
    x = case.inputs()
    with torch.no_grad():
        torch.testing.assert_close(b(x).logits, a(x).logits, rtol=1e-4, atol=1e-5)


def test_an_unusable_offload_folder_is_one_line(folder, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EigenscopeError, match="offload folder"):
        eigenscope.compress(folder, ratio=0.3, calibration=ids(), max_memory="1KB",
                            offload_dir=blocker / "sub")


def test_statistics_without_compressing_match_a_plain_gram_pass():
    """compression.statistics (compress's own passes) gives every target's Gram matrix, equal to
    a plain forward pass with hooks, and the output-gradient weights on a causal LM."""
    from eigenscope.compression import statistics
    from eigenscope.compression.hooks import gram_statistics

    model = tiny_llama()
    st = statistics(model, ids(), batch_size=4)
    plain = gram_statistics(model, ids(), batch_size=4)
    assert st.keys() == plain.keys() and st
    for name in st:
        torch.testing.assert_close(st[name].gram, plain[name].gram, rtol=1e-5, atol=1e-6)
        assert st[name].d_out is not None and bool((st[name].d_out > 0).all())

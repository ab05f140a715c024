"""Speed-aware allocation, fused factorised forward, quantization and its low-rank correction, on
tiny in-file models. Correctness only: timings live in benchmarks/inference_speed.py."""
from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from safetensors import safe_open
from torch import nn

from eigenscope.compression.hooks import gram_statistics
from eigenscope.compression import latency as L
from eigenscope.compression.allocate import Curve, allocate, fast_param_cost, latency_cost
from eigenscope.compression.api import compress
from eigenscope.compression.io import load, save
from eigenscope.compression.quantize import codes, quantize_
from eigenscope.errors import EigenscopeError
from eigenscope.maths.quant import (dequantize, output_error, pack4, qera_factors, round_to_nearest,
                                    unpack4)
from eigenscope.nn.fuse import FusedLowRankLinear, fuse_lowrank_, unfuse_lowrank_
from eigenscope.nn.layout import column_major_
from eigenscope.nn.lowrank import LowRankLinear
from eigenscope.nn.quant import QuantLinear, model_nbytes

V, D, H = 48, 32, 64


class Attn(nn.Module):
    """q/k/v read one input (GQA-narrow k, v); o reads another."""

    def __init__(self):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(D, D), nn.Linear(D, 16, bias=False), nn.Linear(D, 16)
        self.o_proj = nn.Linear(16, D)

    def forward(self, x):
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        a = torch.softmax(q[..., :16] @ k.transpose(-1, -2) / 4, -1)
        return self.o_proj(a @ v)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = nn.Linear(D, H), nn.Linear(D, H), nn.Linear(H, D)

    def forward(self, x):
        return self.down_proj(torch.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn, self.mlp = Attn(), MLP()

    def forward(self, x):
        x = x + self.self_attn(x)
        return x + self.mlp(x)


class TinyLM(nn.Module):
    def __init__(self, n=2):
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.layers = nn.ModuleList([Layer() for _ in range(n)])
        self.head = nn.Linear(D, V)

    def forward(self, ids):
        x = self.emb(ids)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def tiny(seed=0):
    torch.manual_seed(seed)
    return TinyLM().eval()


def ids(n=16, t=12, seed=1):
    return torch.randint(0, V, (n, t), generator=torch.Generator().manual_seed(seed))


def compressed(ratio=0.3):
    return compress(tiny(), ratio=ratio, method="whiten", calibration=ids(), multiple=1)


# ---- fused forward ---------------------------------------------------------------------------

@pytest.mark.parametrize("ratio", [0.2, 0.5])
def test_fused_equals_unfused(ratio):
    model, _ = compressed(ratio)
    x = ids(4, 8, seed=5)
    with torch.no_grad():
        ref = model(x)
        groups = fuse_lowrank_(model)
        fused = model(x)
    n_fused = sum(isinstance(m, FusedLowRankLinear) for m in model.modules())
    assert groups >= 2 and n_fused >= 4     # q/k/v and gate/up of each layer where factorised
    assert torch.allclose(fused, ref, atol=1e-5, rtol=1e-5)
    assert unfuse_lowrank_(model) == n_fused
    with torch.no_grad():
        assert torch.allclose(model(x), ref, atol=1e-5, rtol=1e-5)


def test_fused_member_with_another_input_recomputes():
    """A wrong grouping costs time, never correctness: each member still sees its own input."""
    torch.manual_seed(0)
    a, b = (LowRankLinear.from_linear(nn.Linear(D, D), rank=6) for _ in range(2))
    holder = nn.Module()
    holder.q_proj, holder.k_proj = a, b
    x1, x2 = torch.randn(3, D), torch.randn(3, D)
    with torch.no_grad():
        ref = a(x1), b(x2), a(x2)
        fuse_lowrank_(holder)
        got = holder.q_proj(x1), holder.k_proj(x2), holder.q_proj(x2)
    for r, g in zip(ref, got):
        assert torch.allclose(r, g, atol=1e-6)


def test_fused_save_load_round_trip_bit_identical(tmp_path):
    model, plan = compressed()
    fuse_lowrank_(model)
    x = ids(3, 8, seed=7)
    with torch.no_grad():
        before = model(x)
    path = save(model, tmp_path / "m.safetensors", plan=plan)
    back = load(path, model=tiny(seed=3))
    assert not any(isinstance(m, FusedLowRankLinear) for m in back.modules())  # the unfused layout
    fuse_lowrank_(back)
    with torch.no_grad():
        assert torch.equal(back(x), before)


@pytest.mark.parametrize("fuse", [False, True])
def test_column_major_keeps_outputs_ties_and_saves(tmp_path, fuse):
    model, plan = compressed()
    model.head.weight = model.emb.weight               # a tied head: one weight, two users
    if fuse:
        fuse_lowrank_(model)
    x = ids(3, 8, seed=7)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(x)
    n = column_major_(model)
    linears = {id(m.weight) for m in model.modules() if type(m) is nn.Linear}
    fused = {id(m.fused_down) for m in model.modules() if hasattr(m, "fused_down")}
    assert n == len(linears | fused) and (len(fused) > 0) == fuse
    for m in model.modules():
        if type(m) is nn.Linear:
            assert m.weight.stride() == (1, m.weight.shape[0]) and m.weight.t().is_contiguous()
    assert model.head.weight is model.emb.weight
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-5, rtol=1e-5)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    back = load(save(model, tmp_path / "m.safetensors", plan=plan), model=tiny(seed=3))
    assert all(torch.equal(v, state[k]) for k, v in back.state_dict().items() if k in state)
    assert column_major_(model) == n                   # idempotent: already in the layout


def test_fused_forward_inside_torch_compile():
    """Inside a compiled graph the fused members take their slice of the factor (no Python
    cache, which would break the graph); outputs equal the eager ones."""
    model, _ = compressed()
    fuse_lowrank_(model)
    x = ids(2, 8, seed=9)
    with torch.no_grad():
        ref = model(x)
        got = torch.compile(model, backend="eager", fullgraph=True)(x)
    assert torch.allclose(got, ref, atol=1e-6)


def test_latency_table_times_column_major_weights():
    seen = []
    run = L._runner(lambda W: seen.append(W), [(6, 4), (6,)], torch.zeros(200))
    run(torch.device("cpu"))
    assert seen and all(w[0].shape == (6, 4) and w[0].stride() == (1, 6) for w in seen)
    assert seen[0][0].data_ptr() != seen[1][0].data_ptr()   # successive calls read other copies


# ---- quantization ----------------------------------------------------------------------------

@pytest.mark.parametrize("n", [12, 13])
def test_pack4_round_trip(n):
    q = torch.randint(0, 16, (5, n), dtype=torch.uint8)
    p = pack4(q)
    assert p.shape == (5, (n + 1) // 2) and torch.equal(unpack4(p, n), q)


@pytest.mark.parametrize("bits,group", [(8, 32), (4, 8), (4, 16)])
def test_round_to_nearest_error_bound(bits, group):
    """Known bound: min-max rounding errs by at most half a step per entry."""
    W = torch.randn(7, 32, dtype=torch.float64)
    q, scale, zero = round_to_nearest(W, bits, group)
    assert int(q.max()) <= 2 ** bits - 1
    err = (dequantize(q, scale, zero, dtype=torch.float64) - W).abs().view(7, -1, group)
    assert (err <= scale[..., None] / 2 + 1e-12).all()


# the optional backends (the `quant` extra); tests of them skip where the package is absent
LIBRARY = {"hqq": "hqq", "torchao": "torchao"}


@pytest.mark.parametrize("backend,bits", [("hqq", 4), ("hqq", 8), ("torchao", 4), ("torchao", 8)])
def test_backend_codes_match_the_library_dequantization(backend, bits):
    """Our (q - zero) * scale reading of the codes equals the library's own dequantization."""
    pytest.importorskip(LIBRARY[backend])
    W = torch.randn(16, 64)
    q, scale, zero = codes(W, bits, 16, backend)
    ours = dequantize(q, scale, zero)
    if backend == "hqq":
        from hqq.core.quantize import Quantizer
        Wq, meta = Quantizer.quantize(W, nbits=bits, group_size=16, optimize=True, axis=1, bitpack=False,
                                      compute_dtype=torch.float32, device="cpu")
        theirs = Quantizer.dequantize(Wq, meta).reshape(16, 64)
    else:
        from torchao.quantization.quant_primitives import (MappingType, choose_qparams_affine,
                                                           dequantize_affine, quantize_affine)
        top = 2 ** bits - 1
        s, z = choose_qparams_affine(W, MappingType.ASYMMETRIC, (1, 16), torch.uint8, 0, top)
        theirs = dequantize_affine(quantize_affine(W, (1, 16), s, z, torch.uint8, 0, top), (1, 16), s, z,
                                   torch.uint8, 0, top)
    assert torch.allclose(ours, theirs, atol=1e-5)
    rel = float((ours - W).norm() / W.norm())
    assert rel < (0.01 if bits == 8 else 0.15)


def test_qera_closed_form_is_the_optimum():
    """||(E - C) X||^2 at the closed form equals the Eckart-Young tail of E X (X full row rank),
    and no other rank-r correction tried does better."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(12, 10, generator=g, dtype=torch.float64)
    X = torch.randn(10, 80, generator=g, dtype=torch.float64) * torch.logspace(0, -1.5, 10, dtype=torch.float64)[:, None]
    q, s, z = round_to_nearest(W, 4, 5)
    Wq = dequantize(q, s, z, dtype=torch.float64)
    G = X @ X.T
    for r in (1, 3, 6):
        B, A = qera_factors(W, Wq, G, r)
        got = output_error(W, Wq + B @ A, G)
        direct = float(((W - Wq - B @ A) @ X).pow(2).sum())
        tail = float(torch.linalg.svdvals((W - Wq) @ X)[r:].pow(2).sum())
        assert got == pytest.approx(direct, rel=1e-9) and got == pytest.approx(tail, rel=1e-8)
        for _ in range(5):  # random rank-r corrections never beat it
            C = torch.randn(12, r, generator=g, dtype=torch.float64) @ torch.randn(r, 10, generator=g, dtype=torch.float64)
            assert output_error(W, Wq + 0.1 * C, G) >= got
    assert output_error(W, Wq + B @ A, G) < output_error(W, Wq, G)


@pytest.mark.parametrize("bits,group,rank,backend", [(8, None, 0, "hqq"), (4, 16, 0, "hqq"), (4, 8, 4, "rtn"),
                                                     (4, 16, 4, "torchao")])
def test_quantized_save_load_round_trip(tmp_path, bits, group, rank, backend):
    if backend in LIBRARY:
        pytest.importorskip(LIBRARY[backend])
    model, plan = compressed()
    quantize_(model, bits=bits, group=group, backend=backend, rank=rank,
              stats=gram_statistics(model, ids()))
    x = ids(3, 8, seed=9)
    with torch.no_grad():
        before = model(x)
    path = save(model, tmp_path / "q.safetensors", plan=plan)
    with safe_open(str(path), "pt") as fh:
        assert "quant" in fh.metadata()
        assert fh.get_tensor(next(k for k in fh.keys() if k.endswith("qweight"))).dtype == torch.uint8
    back = load(path, model=tiny(seed=4))
    assert sum(isinstance(m, QuantLinear) for m in back.modules()) == \
        sum(isinstance(m, QuantLinear) for m in model.modules()) > 0
    with torch.no_grad():
        assert torch.equal(back(x), before)
    assert model_nbytes(back) == model_nbytes(model)


def test_correction_lowers_the_output_error():
    """int4 + QERA rank 4 is closer to the original model than int4 alone (same codes)."""
    base = tiny()
    stats = gram_statistics(base, ids())
    x = ids(8, 12, seed=11)
    outs = []
    for rank in (0, 4):
        m = copy.deepcopy(base)
        quantize_(m, bits=4, group=16, backend="rtn", rank=rank, stats=stats)
        with torch.no_grad():
            outs.append(float((m(x) - base(x)).pow(2).mean()))
    assert outs[1] < outs[0]


def test_quantize_bad_options():
    for kw in (dict(bits=3), dict(backend="gptq"), dict(group=7), dict(rank=-1)):
        with pytest.raises(EigenscopeError):
            quantize_(tiny(), **kw)
    with pytest.raises(EigenscopeError, match="statistics"):
        quantize_(tiny(), bits=4, group=16, rank=2, backend="rtn")


def test_missing_backend_library_is_one_line():
    from eigenscope.compression.quantize import _library

    with pytest.raises(EigenscopeError, match=r"backend 'hqq' needs the hqq package.*\[quant\]"):
        _library("hqq", "eigenscope_no_such_module")


# ---- latency model and allocation ------------------------------------------------------------

def table(spec: dict) -> L.LatencyTable:
    """A synthetic LatencyTable {(m, n): (dense, ranks, times)}."""
    t = L.LatencyTable("test")
    for shape, (dense, ranks, times) in spec.items():
        t.shapes[shape] = L.ShapeLatency(dense, list(ranks), list(times))
    return t


def test_options_snap_and_drop_slow_ranks():
    t = table({(64, 64): (10.0, [8, 16, 24, 32], [2.0, 5.0, 4.0, 11.0])})
    # rank 16 (5.0) is dominated by rank 24 (4.0): it snaps up; rank 32 is slower than dense
    assert t.options(64, 64) == [(8, 2.0), (24, 4.0)]
    assert t.break_even(64, 64) == 24


def curves():
    g = torch.Generator().manual_seed(0)
    return [Curve(f"l{i}", 64, 64, torch.sort(torch.rand(64, generator=g), descending=True).values)
            for i in range(4)] + [Curve("slow", 64, 32, torch.linspace(1, 0.1, 32))]


SYN = table({(64, 64): (10.0, [8, 16, 24], [3.0, 5.0, 8.0]),
             (64, 32): (4.0, [8, 16], [4.5, 6.0])})      # never faster than dense


@pytest.mark.parametrize("allocation", ["global", "knapsack", "uniform"])
@pytest.mark.parametrize("ratio", [0.2, 0.4])
def test_latency_allocation_respects_the_time_budget(allocation, ratio):
    cs = curves()
    ranks = allocate(cs, allocation, ratio, 8, cost=latency_cost(SYN))
    assert ranks["slow"] is None                                   # slower factorisation: dense
    spent = sum(L.predict(SYN, c.m, c.n, ranks[c.name]) for c in cs)
    dense = sum(SYN.dense(c.m, c.n) for c in cs)
    if allocation == "uniform":  # each factorised matrix keeps (1 - ratio) of its own time
        assert all(L.predict(SYN, c.m, c.n, ranks[c.name]) <= (1 - ratio) * SYN.dense(c.m, c.n)
                   for c in cs if ranks[c.name] is not None)
    else:
        assert spent <= (1 - ratio) * dense + 1e-9
    assert all(ranks[c.name] in (None, 8, 16, 24) for c in cs)   # ranks from the measured grid


SNAP = table({(64, 64): (10.0, [8, 16, 24], [3.0, 5.0, 4.5]),   # 16 snaps up to 24
              (64, 32): (4.0, [8, 16], [4.5, 6.0])})


@pytest.mark.parametrize("allocation", ["global", "knapsack", "uniform"])
@pytest.mark.parametrize("ratio", [0.2, 0.4])
def test_params_fast_removes_parameters_with_faster_ranks_only(allocation, ratio):
    cs = curves()
    ranks = allocate(cs, allocation, ratio, 8, cost=fast_param_cost(SNAP))
    assert ranks["slow"] is None and all(ranks[c.name] in (None, 8, 24) for c in cs)
    kept = sum(c.m * c.n if ranks[c.name] is None else ranks[c.name] * (c.m + c.n) for c in cs)
    assert kept <= (1 - ratio) * sum(c.m * c.n for c in cs)       # the budget is in parameters
    if allocation == "knapsack":  # exact: fewer options can only cost loss (greedy can gain)
        def loss(rk):
            return sum(0.0 if rk[c.name] is None else float(c.loss()[rk[c.name]]) for c in cs)
        assert loss(allocate(cs, allocation, ratio, 8)) <= loss(ranks) + 1e-12


def test_latency_table_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EIGENSCOPE_CACHE", str(tmp_path))
    t1 = L.latency_table([(32, 16)], multiple=8, repeats=1)
    assert (tmp_path / "latency.json").exists()
    assert t1.shapes[(32, 16)].ranks == [8]                       # useful rank of 32x16 is 10
    monkeypatch.setattr(L, "_measure_shape", lambda *a: (_ for _ in ()).throw(AssertionError("measured")))
    t2 = L.latency_table([(32, 16)], multiple=8, repeats=1)       # read back, not measured
    assert t2.shapes[(32, 16)].dense == t1.shapes[(32, 16)].dense


def test_latency_of_a_shape_larger_than_the_cold_pool(monkeypatch):
    # a head of 49152 x 576 float32 outgrows COLD_BYTES: the pool grows to one copy
    monkeypatch.setattr(L, "COLD_BYTES", 1024)
    t = L.latency_table([(64, 48)], multiple=8, repeats=1, cache=False)
    sl = t.shapes[(64, 48)]
    assert sl.dense > 0 and sl.ranks == [8, 16, 24] and all(x > 0 for x in sl.times)


def test_compress_latency_objective_plan(monkeypatch):
    monkeypatch.setattr(L, "latency_table", lambda shapes, **kw: _linear_table(shapes))
    model, plan = compress(tiny(), ratio=0.3, method="svd", objective="latency", multiple=8)
    assert "predicted_us" in plan and plan.attrs["predicted_us"] <= 0.7 * plan.attrs["predicted_dense_us"] + 1e-9
    with pytest.raises(EigenscopeError, match="objective"):
        compress(tiny(), ratio=0.3, method="svd", objective="speed")
    model, plan = compress(tiny(), ratio=0.3, method="svd", objective="params-fast", multiple=8)
    kept = sum(m * n if pd.isna(r) else int(r) * (m + n)
               for (m, n), r in zip(plan["shape"], plan["rank"]))
    assert kept <= 0.7 * sum(m * n for m, n in plan["shape"]) and "predicted_us" in plan


def _linear_table(shapes):
    """Times proportional to weights read plus a fixed cost per GEMM (a bandwidth-bound device)."""
    t = L.LatencyTable("linear")
    for m, n in set(map(tuple, shapes)):
        ranks = list(range(8, max((m * n - 1) // (m + n), 8) + 1, 8))
        t.shapes[(m, n)] = L.ShapeLatency(1e-6 * (m * n / 1000 + 0.1), ranks,
                                          [1e-6 * (r * (m + n) / 1000 + 0.2) for r in ranks])
    return t

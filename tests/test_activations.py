"""activations(), streaming covariances, the trace and the filter on tiny in-file models.

Table-driven over tiny models from transformers' config classes (Llama, GPT-2, BERT) and a
plain MLP; every number is checked against hidden states computed independently
(output_hidden_states or a plain forward)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import eigenscope
from eigenscope.hidden_states.stream import SiteStats
from eigenscope.errors import EigenscopeError
from eigenscope.maths.activations import effective_rank, matrix_entropy, window_descriptors
from eigenscope.monitor import ActivationTrace
from eigenscope.nn import SpectralFilter

tf = pytest.importorskip("transformers")
V = 97


def _llama():
    return tf.LlamaForCausalLM(tf.LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64,
                                              num_hidden_layers=2, num_attention_heads=4,
                                              num_key_value_heads=2, max_position_embeddings=64))


def _gpt2():
    return tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4,
                                            n_positions=64, bos_token_id=0, eos_token_id=0))


def _bert():
    return tf.BertModel(tf.BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=4, intermediate_size=64))


MODELS = {"llama": (_llama, 64), "gpt2": (_gpt2, 128), "bert": (_bert, 64)}


def _ids(n=6, t=20, seed=0):
    return torch.randint(0, V, (n, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_site_on_tiny_transformers(kind):
    torch.manual_seed(0)
    make, hidden = MODELS[kind]
    model = make().eval()
    ids = _ids()
    df = eigenscope.activations(model, ids, sites="all", batch_size=4)
    assert list(df.columns) == eigenscope.hidden_states.COLUMNS
    assert len(df) == 2 * 4 and set(df["site"]) == set(eigenscope.hidden_states.SITES)
    assert (df["tokens"] == ids.numel()).all() and (df["sequences"] == 6).all()
    assert df.loc[df["site"] == "mlp_hidden", "dim"].eq(hidden).all()
    assert df.loc[df["site"] == "residual", "dim"].eq(32).all()
    assert (df["status"] == "ok").all()
    # the residual row of block 0 against hidden_states[1] computed independently
    with torch.no_grad():
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states[1]   # (6, 20, 32)
    X = hs.reshape(-1, 32).double()
    lam = torch.linalg.eigvalsh(torch.cov(X.T, correction=0)).clamp_min(0).numpy()
    row = df[(df["layer"] == 0) & (df["site"] == "residual")].iloc[0]
    assert row["effective_rank"] == pytest.approx(effective_rank(lam), rel=1e-6)
    assert row["matrix_entropy"] == pytest.approx(float(matrix_entropy(hs).mean()), rel=1e-6)
    np.testing.assert_allclose(df.attrs["spectra"][row["name"]], lam, rtol=1e-6, atol=1e-9)


def test_plain_mlp_rows_and_errors():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 6))
    x = torch.randn(300, 12)
    df = eigenscope.activations(mlp, x, batch_size=64)
    assert df["name"].tolist() == ["0:residual", "2:residual"]
    with torch.no_grad():
        h = mlp[0](x).double()
    lam = torch.linalg.eigvalsh(torch.cov(h.T, correction=0)).numpy()
    np.testing.assert_allclose(df.attrs["spectra"]["0:residual"], lam.clip(0), rtol=1e-9, atol=1e-12)
    with pytest.raises(EigenscopeError, match="no repeated blocks"):
        eigenscope.activations(mlp, x, sites="mlp_hidden")
    with pytest.raises(EigenscopeError, match="unknown site 'mlp'"):
        eigenscope.activations(mlp, x, sites="mlp")
    with pytest.raises(EigenscopeError, match="max_tokens"):
        eigenscope.activations(mlp, x, max_tokens=1)


def test_max_tokens_and_padding_mask():
    torch.manual_seed(0)
    model = _llama().eval()
    ids = _ids(8, 16)
    df = eigenscope.activations(model, ids, max_tokens=40, batch_size=2)
    assert (df["tokens"] == 64).all()                  # stops after the batch reaching 40
    mask = torch.ones_like(ids)
    mask[:, 12:] = 0                                   # right padding: 4 tokens of each row
    df = eigenscope.activations(model, {"input_ids": ids, "attention_mask": mask}, batch_size=4)
    assert (df["tokens"] == 8 * 12).all()


def test_streaming_covariance_equals_one_shot():
    rng = np.random.default_rng(0)
    # a mean of 1e4 against unit variance: the shifted sums keep the covariance exact
    X = torch.tensor(rng.normal(size=(5, 30, 16)) + 1e4)
    st = SiteStats()
    for part in X.split(2):
        st.update(part)
    ref = torch.cov(X.reshape(-1, 16).T, correction=0)
    assert torch.allclose(st.covariance(), ref, rtol=1e-9, atol=1e-9)
    assert torch.allclose(st.mean(), X.reshape(-1, 16).mean(0))
    assert st.n == 150 and st.sequences == 5
    assert st.scores()[0] == pytest.approx(float(matrix_entropy(X).mean()), rel=1e-9)


def _hidden_after_generate(model, prompt, new):
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=new, do_sample=False, pad_token_id=0)
        hs = model(input_ids=out, output_hidden_states=True).hidden_states
    return out, hs


def test_trace_during_generate_matches_direct_windows():
    torch.manual_seed(0)
    model = _llama().eval()
    prompt = _ids(1, 12, seed=3)
    tr = ActivationTrace(model, window=8)
    df = tr.run(prompt, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert set(df["phase"]) == {"prompt", "generated"}
    assert sorted(set(df["name"])) == ["model.layers.0:residual", "model.layers.1:residual"]
    # prompt steps 3..11 (windows of >= 4 tokens), generated steps 12..15 (the 5th token is
    # sampled from the last forward and never fed back)
    steps = sorted(set(df.loc[df["name"] == "model.layers.0:residual", "step"]))
    assert steps == list(range(3, 16))
    out, hs = _hidden_after_generate(model, prompt, 5)
    for step in (5, 11, 15):
        w = hs[1][:, max(0, step - 7):step + 1].double()      # block 0's output, window at step
        ref = window_descriptors(w)
        row = df[(df["step"] == step) & (df["layer"] == 0)].iloc[0]
        for k in ("entropy", "top_share", "mp_ks"):
            assert row[k] == pytest.approx(ref[k][0], rel=1e-3, abs=1e-5)


def test_trace_errors():
    with pytest.raises(EigenscopeError, match="window"):
        ActivationTrace(_llama(), window=2)


def _spiky_mlp(d=16):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, d), nn.Identity(), nn.Linear(d, 4))


def _spiky_inputs(n=4000, d=16, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(d, k, generator=g))[0]
    x = 0.1 * torch.randn(n, d, generator=g) + (3 * torch.randn(n, k, generator=g)) @ U.T
    return x, U


@pytest.mark.parametrize("mode", ["project", "denoise"])
def test_filter_keeping_every_direction_is_the_identity(mode):
    mlp = _spiky_mlp()
    x, _ = _spiky_inputs()
    with torch.no_grad():
        ref = mlp(x)
    f = eigenscope.hidden_states.fit_filter(mlp, x, layer=0, keep=16, mode=mode)
    with torch.no_grad():
        assert torch.allclose(mlp(x), ref, atol=1e-4)
    f.remove()


def test_filter_keeping_the_spikes_projects_onto_them():
    mlp = _spiky_mlp()
    # identity first layer: the site's hidden states are the inputs, spikes along U
    with torch.no_grad():
        mlp[0].weight.copy_(torch.eye(16))
        mlp[0].bias.zero_()
    x, U = _spiky_inputs()
    f = eigenscope.hidden_states.fit_filter(mlp, x, layer=0, keep="spikes", mode="project")
    assert f.rank == 2                                        # the two planted spikes
    P = (U @ U.T).double()
    # the kept subspace is the planted one (principal angles ~ 0)
    assert torch.linalg.svdvals(U.double().T @ f.basis.double()).min() > 0.999
    h = torch.randn(10, 16)
    with torch.no_grad():
        got = mlp(h)
        want = mlp[2](f(h))
    assert torch.allclose(got, want, atol=1e-5)
    fh = f(h).double()
    assert torch.allclose(f(f(h)).double(), fh, atol=1e-5)      # a projection: P^2 = P
    assert torch.allclose(fh, fh @ P, atol=0.02)                # inside the planted span
    f.remove()
    with torch.no_grad():
        assert torch.allclose(mlp(h), mlp[2](h), atol=1e-6)     # removed: no filtering


def test_filter_on_llama_residual_and_bad_options():
    torch.manual_seed(0)
    model = _llama().eval()
    ids = _ids(4, 16)
    with torch.no_grad():
        ref = model(input_ids=ids).logits
    f = eigenscope.hidden_states.fit_filter(model, ids, layer=0, keep=32)
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, ref, atol=1e-4)
        f.remove()
        f = eigenscope.hidden_states.fit_filter(model, ids, layer=0, keep=0.5)
        assert 1 <= f.rank < 32
        assert not torch.allclose(model(input_ids=ids).logits, ref, atol=1e-3)
    f.remove()
    C = torch.eye(4)
    with pytest.raises(EigenscopeError, match="keep"):
        SpectralFilter.from_covariance(C, torch.zeros(4), tokens=10, keep=1.5)
    with pytest.raises(EigenscopeError, match="mode"):
        SpectralFilter.from_covariance(C, torch.zeros(4), tokens=10, keep=2, mode="x")
    assert math.isfinite(SpectralFilter.from_covariance(C, torch.zeros(4), tokens=10, keep=4).rank)


DOC_MODULES = ["eigenscope.maths.activations", "eigenscope.hidden_states.runner",
               "eigenscope.hidden_states.stream", "eigenscope.hidden_states.io",
               "eigenscope.hidden_states.filter", "eigenscope.nn.filter", "eigenscope.monitor.trace",
               "eigenscope.report.activations_view"]


@pytest.mark.parametrize("name", DOC_MODULES)
def test_docstring_examples(name):
    import doctest
    import importlib
    res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0


def test_importing_the_package_never_shadows_the_verb():
    import importlib
    import eigenscope.hidden_states.sites  # noqa: F401
    fn = importlib.import_module("eigenscope.hidden_states.runner").activations
    assert eigenscope.activations is fn

"""Class 9 (partial and odd files): a GGUF file cut short gives rows for the tensors it wholly
holds and the status "truncated" (with the missing bytes) for the rest; a type we cannot decode
is a row status; a damaged GGUF header is one line, never a hang; a shard index cannot name a
path outside its folder; a pre-1.6 (non-zip) torch .bin is read; shards must agree with their
index and with config.json."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

import eigenscope
from _fixtures_hostile import assert_user_error, run_cli
from _fixtures_sources import TinyLlama, config, save_bin, save_sharded, save_single, state_dict
from eigenscope.errors import EigenscopeError, SourceError
from eigenscope.sources import open_source
from eigenscope.sources.names import gguf_to_hf

# GGUF tensors (name, rows, cols, type), written in this order
TENSORS = [("blk.0.attn_q.weight", 32, 64, "F32"), ("blk.0.attn_k.weight", 32, 64, "Q8_0"),
           ("blk.0.attn_v.weight", 32, 64, "F16"), ("blk.0.ffn_up.weight", 48, 64, "Q4_0")]


def _write_gguf(path: Path, tensors=TENSORS, raw=None) -> Path:
    """A small GGUF file; `raw` {name: (uint8 bytes array, type)} adds tensors stored as given."""
    from gguf import quants

    w = gguf.GGUFWriter(str(path), "llama")
    g = np.random.default_rng(0)
    for name, m, n, qtype in tensors:
        arr = g.standard_normal((m, n)).astype(np.float32)
        qt = gguf.GGMLQuantizationType[qtype]
        if qtype in ("F32", "F16"):
            w.add_tensor(name, arr.astype(np.float16) if qtype == "F16" else arr)
        else:
            q = quants.quantize(arr, qt)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qt)
    for name, (data, qt) in (raw or {}).items():
        w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qt)
    for step in (w.write_header_to_file, w.write_kv_data_to_file, w.write_tensors_to_file, w.close):
        step()
    return path


def _ends(path: Path) -> dict:
    """{GGUF tensor name: end byte} from gguf's own reader (an independent parser)."""
    r = gguf.GGUFReader(str(path))
    return {t.name: int(t.data_offset) + int(t.n_bytes) for t in r.tensors}


def _rows(path):
    df = eigenscope.analyze(str(path), metrics="norms")
    return df.set_index("tensor")


@pytest.mark.parametrize("cut", ["one_byte_short", "inside_last", "inside_second", "inside_first"])
def test_truncated_gguf_gives_rows_for_whole_tensors(cut, tmp_path):
    full = _write_gguf(tmp_path / "full.gguf")
    ends = _ends(full)
    order = sorted(ends, key=ends.get)
    size = {"one_byte_short": max(ends.values()) - 1,
            "inside_last": (ends[order[-2]] + ends[order[-1]]) // 2,
            "inside_second": (ends[order[0]] + ends[order[1]]) // 2,
            "inside_first": ends[order[0]] - 100}[cut]
    cut_file = tmp_path / "cut.gguf"
    cut_file.write_bytes(full.read_bytes()[:size])
    whole, part = _rows(full), _rows(cut_file)
    assert list(part.index) == list(whole.index)
    missing = max(ends.values()) - size
    for gname, end in ends.items():
        hf = gguf_to_hf(gname, "llama")
        if end <= size:   # wholly present: the same row as from the whole file
            assert part.loc[hf, "status"] == "ok"
            assert part.loc[hf, "frobenius_norm"] == whole.loc[hf, "frobenius_norm"]
        else:
            assert part.loc[hf, "status"] == "truncated"
            assert f"the file is {missing:,} bytes short" in part.loc[hf, "warning"]
    code, out, err = run_cli("analyze", cut_file, "--rows", "0")
    assert code == 0 and "Traceback" not in err


def test_unsupported_and_unknown_types_are_row_statuses(tmp_path):
    iq = np.random.default_rng(1).integers(0, 255, (16, 2 * 18), dtype=np.uint8)  # IQ4_NL blocks
    path = _write_gguf(tmp_path / "q.gguf", TENSORS[:2],
                       raw={"blk.0.ffn_gate.weight": (iq, gguf.GGMLQuantizationType.IQ4_NL),
                            "blk.0.ffn_down.weight": (iq.copy(), gguf.GGMLQuantizationType.IQ4_NL)})
    field = gguf.GGUFReader(str(path)).tensors[-1].field         # ffn_down: make its type id 250
    name_len = int(field.parts[0][0])
    at = field.offset + 8 + name_len + 4 + 8 * int(field.parts[2][0])
    data = bytearray(path.read_bytes())
    data[at:at + 4] = struct.pack("<I", 250)
    path.write_bytes(bytes(data))
    df = _rows(path)
    status = {t.split(".")[-2]: s for t, s in df["status"].items()}
    assert status == {"q_proj": "ok", "k_proj": "ok", "gate_proj": "unsupported",
                      "down_proj": "unsupported"}
    warnings = " ".join(df["warning"])
    assert "IQ4_NL" in warnings and "type id 250" in warnings


def _kv_gguf(path: Path, kv: bytes, n_kv: int = 1, n_tensors: int = 0) -> Path:
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + kv + b"\0" * 64)
    return path


def _key(name: str) -> bytes:
    return struct.pack("<Q", len(name)) + name.encode()


CORRUPT_HEADERS = {
    "huge_array": _key("a") + struct.pack("<IIQ", 9, 0, 2**62),            # uint8 x 2^62
    "huge_string_array": _key("a") + struct.pack("<IIQ", 9, 8, 2**40),
    "huge_string": _key("a") + struct.pack("<IQ", 8, 2**60),
    "nested_arrays": _key("a") + struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 9, 1) * 10,
    "bad_value_type": _key("a") + struct.pack("<I", 77),
    "huge_key": struct.pack("<Q", 2**50),
    "huge_kv_count": b"",
}


@pytest.mark.parametrize("case", sorted(CORRUPT_HEADERS))
def test_corrupt_gguf_header_is_one_line(case, tmp_path):
    path = _kv_gguf(tmp_path / "c.gguf", CORRUPT_HEADERS[case],
                    n_kv=2**60 if case == "huge_kv_count" else 1)
    with pytest.raises(SourceError) as err:
        open_source(path)
    assert "c.gguf" in str(err.value) and "\n" not in str(err.value)


def _tensor_info(name: str, dims, type_id: int = 0, offset: int = 0) -> bytes:
    return (_key(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
            + struct.pack("<IQ", type_id, offset))


@pytest.mark.parametrize("infos, needle", [
    ([_tensor_info("t", [2] * 9)], "9 dimensions"),
    ([_tensor_info("t", [4, 4]), _tensor_info("t", [4, 4], offset=64)], "listed twice"),
    ([_tensor_info("t", [4, 4])] * 1 + [b"\xff" * 7], "truncated or corrupt"),
])
def test_bad_tensor_list_is_one_line(infos, needle, tmp_path):
    bad = tmp_path / "t.gguf"
    bad.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, len(infos), 0) + b"".join(infos) + b"\0" * 256)
    if needle == "truncated or corrupt":   # the count says 2, the bytes hold 1 and a bit
        data = bytearray(bad.read_bytes())
        data[8:16] = struct.pack("<Q", 2)
        bad.write_bytes(bytes(data[: 24 + len(infos[0]) + 7]))
    with pytest.raises(SourceError, match=f"t.gguf.*{needle}"):
        open_source(bad)


OUTSIDE = ["../outside.safetensors", "/etc/passwd", "sub/../../outside.safetensors",
           "..\\outside.safetensors"]


@pytest.mark.parametrize("shard", OUTSIDE)
def test_index_path_outside_the_folder_is_refused_before_opening(shard, tmp_path, monkeypatch):
    folder = save_sharded(state_dict(TinyLlama()), tmp_path / "hf")
    save_single({"x.weight": torch.zeros(2, 2)}, tmp_path / "outside.safetensors")
    index = folder / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["model.norm.weight"] = shard
    index.write_text(json.dumps(data))
    opened = []
    from eigenscope.sources import safetensors_file
    real = safetensors_file.check_header
    monkeypatch.setattr(safetensors_file, "check_header", lambda p: (opened.append(p), real(p)))
    with pytest.raises(SourceError, match="outside the folder"):
        open_source(folder)
    assert opened == []


def test_index_listing_no_tensors_is_one_line(tmp_path):
    """Found by benchmarks/fuzz.py: an empty weight_map once ended in an IndexError."""
    folder = save_sharded(state_dict(TinyLlama()), tmp_path / "hf")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {}}))
    for cmd in (["analyze", folder], ["compress", folder, "--ratio", "0.5", "--out", tmp_path / "o"]):
        assert_user_error(*run_cli(*cmd)[::2], "model.safetensors.index.json", "no tensors")


def test_index_naming_a_missing_shard_or_a_wrong_one(tmp_path):
    folder = save_sharded(state_dict(TinyLlama()), tmp_path / "hf")
    index = folder / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    shards = sorted(set(data["weight_map"].values()))
    moved = {**data, "weight_map": {**data["weight_map"], "model.norm.weight": shards[0]}}
    index.write_text(json.dumps(moved))     # the tensor is in the other shard
    with pytest.raises(SourceError, match=rf"{shards[0]}: the index lists tensor model.norm.weight"):
        open_source(folder)
    (folder / shards[1]).unlink()
    index.write_text(json.dumps(data))
    assert_user_error(*run_cli("analyze", folder)[::2], shards[1], "missing")


def test_legacy_non_zip_torch_bin_is_read(tmp_path):
    sd = state_dict(TinyLlama(tied=False))
    folder = tmp_path / "old"
    folder.mkdir()
    torch.save(sd, folder / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    assert (folder / "pytorch_model.bin").read_bytes()[:4] != b"PK\x03\x04"
    config(folder)
    new = save_bin(sd, tmp_path / "new")
    a = eigenscope.analyze(str(folder), metrics="norms")
    b = eigenscope.analyze(str(new), metrics="norms")
    assert len(a) == len(b) > 0 and (a["frobenius_norm"] == b["frobenius_norm"]).all()


def test_shards_disagreeing_with_config_json_are_one_line(tmp_path):
    folder = save_sharded(state_dict(TinyLlama(tied=False)), tmp_path / "hf", hidden_size=48,
                          intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, vocab_size=40, architectures=["LlamaForCausalLM"])
    with pytest.raises(EigenscopeError) as err:
        from eigenscope.models import load_model
        load_model(str(folder))
    msg = str(err.value)
    assert "\n" not in msg and ".safetensors" in msg and "config.json describes" in msg, msg


def test_odd_tensor_kinds_in_a_bin_file(tmp_path):
    """Sparse storage is read as its dense matrix; a complex tensor is a row status; the other
    rows are analysed."""
    W = torch.randn(12, 8)
    torch.save({"a.weight": W.to_sparse(), "b.weight": torch.randn(12, 8, dtype=torch.complex64),
                "c.weight": W}, tmp_path / "odd.bin")
    df = eigenscope.analyze(str(tmp_path / "odd.bin"), metrics="norms").set_index("name")
    assert list(df["status"]) == ["ok", "unsupported", "ok"]
    assert df.loc["a.weight", "frobenius_norm"] == df.loc["c.weight", "frobenius_norm"]
    assert "complex64" in df.loc["b.weight", "warning"]

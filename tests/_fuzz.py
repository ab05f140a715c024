"""The fuzzing harness shared by tests/test_fuzz.py (hypothesis, a short budget) and
benchmarks/fuzz.py (a long run): small valid inputs, their mutations (byte flips, truncations,
JSON mutations), random command lines, and one function per target that runs a case and
checks the properties:
- exit code 0 or 2 (or, for the save loader, success or an EigenscopeError / OSError);
- no traceback on stderr;
- no hang: each case runs under a timer (SIGALRM) that turns a hang into a failure;
- nothing written outside the case's output folder, and the source file unchanged.

Randomness comes from a `Draw` object: `RandomDraw` (random.Random, for the long run) or
`HypothesisDraw` (hypothesis' `data.draw`, which can shrink a failure).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import signal
import struct
import tempfile
from pathlib import Path

CASE_SECONDS = 120.0   # a hang never ends; a slow case on a loaded machine does


class Draw:
    """Random choices: an int in [lo, hi], one item of a sequence, a bool."""

    def int(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def choice(self, items):
        return items[self.int(0, len(items) - 1)]

    def bool(self) -> bool:
        return self.int(0, 1) == 1


class RandomDraw(Draw):
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def int(self, lo, hi):
        return self.rng.randint(lo, hi)


class HypothesisDraw(Draw):
    def __init__(self, data):
        self.data = data

    def int(self, lo, hi):
        from hypothesis import strategies as st
        return self.data.draw(st.integers(lo, hi))


# --- small valid inputs --------------------------------------------------------------------
def make_seeds(folder: Path) -> dict:
    """{kind: path} of the valid inputs every mutation starts from (written once)."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    mats = {f"model.layers.{i}.mlp.up_proj.weight": torch.randn(24, 16, generator=g) for i in range(2)}
    mats["model.norm.weight"] = torch.ones(16)
    save_file(mats, str(folder / "m.safetensors"), metadata={"format": "pt"})
    torch.save(mats, folder / "m.bin")
    seeds = {"safetensors": folder / "m.safetensors", "gguf": _gguf(folder / "m.gguf"),
             "save": _save(folder / "save"), "hf": _hf(folder / "hf"), "bin": folder / "m.bin",
             "folder": _hf(folder / "sharded", shard="4KB")}
    seeds.update(_tables(folder, seeds["safetensors"]))
    (folder / "text.txt").write_text("the quick brown fox " * 40)
    (folder / "binary.dat").write_bytes(bytes(range(256)) * 4)
    (folder / "adir").mkdir(exist_ok=True)
    return seeds


def _tables(folder: Path, model: Path) -> dict:
    """Saved analyses of `model`: a CSV and a JSON table, and a spectra file."""
    import eigenscope

    df = eigenscope.analyze(str(model), save_spectra=folder / "s.safetensors")
    df.to_csv(folder / "t.csv", index=False)
    df.to_json(folder / "t.json", orient="records")
    return {"table_csv": folder / "t.csv", "table_json": folder / "t.json",
            "table_spectra": folder / "s.safetensors"}


def _gguf(path: Path) -> Path:
    import gguf
    import numpy as np
    from gguf import quants

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_head_count(2)
    g = np.random.default_rng(0)
    w.add_tensor("blk.0.attn_q.weight", g.standard_normal((32, 32)).astype(np.float32))
    q = quants.quantize(g.standard_normal((16, 32)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("blk.0.attn_k.weight", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
    for step in (w.write_header_to_file, w.write_kv_data_to_file, w.write_tensors_to_file, w.close):
        step()
    return path


def _tiny_llama():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, vocab_size=32,
                      max_position_embeddings=32)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


def _save(folder: Path) -> Path:
    import eigenscope

    model, plan = eigenscope.compress(_tiny_llama(), ratio=0.5, method="svd",
                                      allocation="uniform", multiple=2)
    folder.mkdir(parents=True, exist_ok=True)
    return eigenscope.save(model, folder / "model.safetensors", plan=plan)   # metadata in its header


def _hf(folder: Path, shard: str | None = None) -> Path:
    """A Hugging Face folder of the tiny Llama (sharded, with its index, when `shard` is given)."""
    model = _tiny_llama()
    model.save_pretrained(folder, **({"max_shard_size": shard} if shard else {}))
    return folder


# --- mutations -----------------------------------------------------------------------------
JSON_VALUES = [None, True, -1, 0, 1, 7, 2**31, 2**64, -2**63, 1e308, 0.5, "", "x", "F32",
               "float32", "LlamaForCausalLM", "<!--<script>", [], [0], [2**40, 2**40], {},
               {"a": 1}, [[[[[]]]]], "../../etc/passwd"]


def flip_bytes(data: bytes, d: Draw, head: int = 2048) -> bytes:
    """1 to 8 random bytes XOR-ed, mostly in the first `head` bytes (the headers)."""
    out = bytearray(data)
    for _ in range(d.int(1, 8)):
        hi = min(len(out), head) if d.int(0, 3) else len(out)
        i = d.int(0, max(hi - 1, 0))
        out[i] ^= d.int(1, 255)
    return bytes(out)


def truncate(data: bytes, d: Draw) -> bytes:
    return data[: d.int(0, max(len(data) - 1, 0))]


def mutate_json(value, d: Draw, depth: int = 0):
    """One random change somewhere inside a JSON value: replace, delete, add, or deepen."""
    if isinstance(value, dict) and value and depth < 6 and d.int(0, 2):
        key = d.choice(sorted(value, key=str))
        value = dict(value)
        op = d.int(0, 3)
        if op == 0:
            del value[key]
        elif op == 1:
            value[f"k{d.int(0, 9)}"] = d.choice(JSON_VALUES)
        else:
            value[key] = mutate_json(value[key], d, depth + 1)
        return value
    if isinstance(value, list) and value and depth < 6 and d.int(0, 2):
        value = list(value)
        i = d.int(0, len(value) - 1)
        value[i] = mutate_json(value[i], d, depth + 1)
        return value
    if d.int(0, 9) == 0:
        return json.loads("[" * 300 + "]" * 300)
    return d.choice(JSON_VALUES)


def mutate_safetensors_header(data: bytes, d: Draw) -> bytes:
    """Parse the header JSON, mutate it, write it back with a consistent length prefix."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    text = json.dumps(mutate_json(header, d)).encode()
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def mutate_save_metadata(data: bytes, d: Draw) -> bytes:
    """Mutate one JSON field of a save's metadata (ranks, tied, hf_config, plan, hf_class)."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header["__metadata__"]
    key = d.choice(sorted(meta))
    try:
        value = json.loads(meta[key])
    except ValueError:
        value = meta[key]
    new = mutate_json(value, d)
    meta[key] = json.dumps(new) if d.int(0, 5) else str(new)[: d.int(0, 40)]
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def mutate_json_file(data: bytes, d: Draw) -> bytes:
    return json.dumps(mutate_json(json.loads(data), d)).encode()


def mutated(kind: str, data: bytes, d: Draw) -> tuple[str, bytes]:
    """(name of the mutation, the mutated bytes) for a seed of `kind` ("json": a JSON file)."""
    head = len(data) if kind in ("bin", "csv") else 2048   # a zip's directory sits at its end
    ops = [("flip", lambda b, dd: flip_bytes(b, dd, head)), ("truncate", truncate)]
    if kind == "safetensors":
        ops.append(("json", mutate_safetensors_header))
    if kind == "save":
        ops += [("json", mutate_save_metadata)] * 2
    if kind == "json":
        ops += [("json", mutate_json_file)] * 2
    name, op = d.choice(ops)
    return name, op(data, d)


# --- running one case with its properties --------------------------------------------------
class CaseTimeout(Exception):
    """A case ran past CASE_SECONDS (a hang)."""


@contextlib.contextmanager
def deadline(seconds: float | None = None):
    seconds = CASE_SECONDS if seconds is None else seconds

    def ring(signum, frame):
        raise CaseTimeout(f"no result after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def snapshot(folder: Path, skip: Path | None = None) -> dict:
    """{relative path: sha1} of every file under `folder` (outside `skip`)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(folder))] = hashlib.sha1(p.read_bytes()).hexdigest()
        elif not p.is_dir():
            out[str(p.relative_to(folder))] = "special"
    return out


def run_cli_case(argv: list[str], workspace: Path) -> list[str]:
    """Run `eigenscope ARGV` in-process in `workspace` (outputs belong in workspace/out);
    return the broken properties (empty: the case passed)."""
    from eigenscope.cli import main

    before = snapshot(workspace, workspace / "out")
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    try:  # in out/: a default output path (report.html) lands there too
        os.chdir(workspace / "out")
        with deadline(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except CaseTimeout as e:
        return [f"hang: {e}"]
    except BaseException as e:  # main must never raise
        return [f"main raised {type(e).__name__}: {str(e)[:200]}"]
    finally:
        os.chdir(cwd)
    problems = []
    if "CaseTimeout" in err.getvalue():     # raised inside main, reported as an internal error
        return [f"hang: no result after {CASE_SECONDS:.0f} s"]
    if code not in (0, 2):
        problems.append(f"exit code {code}: {err.getvalue().strip()[-300:]}")
    if "Traceback" in err.getvalue():
        problems.append("a traceback on stderr")
    after = snapshot(workspace, workspace / "out")
    if after != before:
        changed = sorted(set(before.items()) ^ set(after.items()))
        problems.append(f"written outside the output folder: {changed[:3]}")
    return problems


def run_load_case(path: Path) -> list[str]:
    """`eigenscope.load(path)`: a model or an EigenscopeError / OSError, in time."""
    import eigenscope
    from eigenscope.errors import EigenscopeError

    before = snapshot(path.parent)
    try:
        with deadline():
            eigenscope.load(path.parent)
    except CaseTimeout as e:
        return [f"hang: {e}"]
    except (EigenscopeError, OSError) as e:
        if "\n" in str(e):
            return [f"a multi-line error: {str(e)[:200]}"]
    except BaseException as e:
        return [f"load raised {type(e).__name__}: {str(e)[:200]}"]
    return [] if snapshot(path.parent) == before else ["the save was changed"]


def new_workspace(root: Path | None = None) -> Path:
    ws = Path(tempfile.mkdtemp(prefix="fuzz-", dir=root))
    (ws / "out").mkdir()
    return ws


def remove_workspace(ws: Path) -> None:
    shutil.rmtree(ws, ignore_errors=True)


def file_case(kind: str, seeds: dict, d: Draw, ws: Path) -> tuple[str, list[str]]:
    """A mutated file of `kind` analysed (readers) or loaded (saves); (description, problems)."""
    if kind == "table":
        return table_case(seeds, d, ws)
    seed = seeds[kind]
    if kind == "folder":
        return folder_case(seed, d, ws)
    name, data = mutated(kind, seed.read_bytes(), d)
    if kind == "save":
        folder = ws / "save"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(data)
        return f"load {name}", run_load_case(folder / "model.safetensors")
    src = ws / seed.name
    src.write_bytes(data)
    argv = ["analyze", str(src), "--rows", "0", "--metrics", d.choice(["norms", "norms,mp", "all"])]
    if d.bool():
        argv += ["--out", str(ws / "out" / "rows.csv")]
    return f"{kind} {name}", run_cli_case(argv, ws)


def folder_case(seed: Path, d: Draw, ws: Path) -> tuple[str, list[str]]:
    """A sharded Hugging Face folder with one file mutated (its index, config.json or a shard),
    analysed, evaluated (transformers reads it) or compressed."""
    folder = ws / "hf"
    shutil.copytree(seed, folder)
    target = d.choice(sorted(p for p in folder.iterdir() if p.is_file()))
    kind = "json" if target.suffix == ".json" else "safetensors"
    name, data = mutated(kind, target.read_bytes(), d)
    target.write_bytes(data)
    cmd = d.choice([["analyze", str(folder), "--rows", "0", "--metrics", "norms"]] * 2 +
                   [["evaluate", str(folder), "--max-tokens", "16", "--seq-len", "8"],
                    ["compress", str(folder), "--method", "svd", "--ratio", "0.5",
                     "--out", str(ws / "out" / "c")]])
    return f"folder {target.name} {name} {cmd[0]}", run_cli_case(cmd, ws)


def table_case(seeds: dict, d: Draw, ws: Path) -> tuple[str, list[str]]:
    """A mutated saved analysis (CSV, JSON or spectra file) made into a report."""
    kind = d.choice(["table_csv", "table_json", "table_spectra"])
    seed = seeds[kind]
    mutation = {"table_json": "json", "table_spectra": "save"}.get(kind, "csv")
    name, data = mutated(mutation, seed.read_bytes(), d)
    src = ws / seed.name
    src.write_bytes(data)
    argv = ["report", str(src), "--out", str(ws / "out" / "r.html"), "--plots", "none"]
    return f"{kind} {name}", run_cli_case(argv, ws)

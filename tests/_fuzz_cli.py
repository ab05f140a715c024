"""Random command lines for the fuzzer: a command, then options drawn from pools that mix valid
values, edge values and nonsense; paths point into the case's workspace (sources, outputs in
out/, a file where a folder is expected, the source itself as an output...)."""
from __future__ import annotations

from pathlib import Path

from _fuzz import Draw, run_cli_case

INTS = ["-1000000000000", "-1", "0", "1", "2", "3", "8", "16", "64", "1000000000",
        "9223372036854775808", "abc", "1.5", "", "nan"]
FLOATS = ["-1", "0", "1e-9", "0.3", "0.5", "0.999", "1", "1.5", "nan", "inf", "-inf", "abc", ""]
REGEXES = ["", ".*", "mlp", "up_proj", "(", "[", "a{2,1}", "(?P<x>", "\\", "*", "q_proj|up", "^$"]
DEVICES = ["cpu", "cuda", "cuda:0", "cuda:9", "mps", "meta", "banana", "", "cpu:0", "xla"]
ALLOCATIONS = ["global", "knapsack", "uniform", "gd_rank", "energy", "energy:0.9", "energy:1",
               "energy:0", "energy:5", "energy:abc", "energy:nan", "energy:-1", "8", "0.5", "",
               "energy:"]
METHODS = ["svd", "asvd", "fwsvd", "whiten", "whiten-fisher", "magic", ""]
METRICS = ["", "all", "norms", "norms,powerlaw", "bogus", "alpha", ",", "norms,,mp", "mp,farms"]
PLOTS = ["flagged", "all", "none", "(", "a,(", ".*", "", "up_proj"]
TITLES = ["t", "", "<!--<script>", "</script><b>", "x" * 2000]


def _paths(ws: Path, src: Path, suffixes) -> list[str]:
    out = ws / "out"
    return ([str(out / f"x{s}") for s in suffixes] + [str(out), str(out / "sub" / "deep" / f"x{suffixes[0]}"),
            str(src), str(ws / "text.txt" / f"x{suffixes[0]}"), str(out / "x.txt"),
            str(out / ("x" * 5000 + suffixes[0]))])


def _options(cmd: str, ws: Path, src: Path) -> dict:
    """option -> pool of values, for `cmd`."""
    inputs = [str(ws / "text.txt"), str(ws / "binary.dat"), str(ws / "adir"), str(ws / "missing.txt"),
              "y" * 5000]
    shared = {"--layers": REGEXES, "--metrics": METRICS}
    if cmd == "analyze":
        return {**shared, "--device": DEVICES, "--workers": INTS, "--seed": INTS, "--rows": INTS,
                "--out": _paths(ws, src, [".csv", ".json", ".parquet"]),
                "--save-spectra": _paths(ws, src, [".safetensors"])}
    if cmd == "report":
        return {**shared, "--plots": PLOTS, "--title": TITLES, "--out": _paths(ws, src, [".html"])}
    if cmd == "compare":
        return {**shared, "--k": INTS, "--out": _paths(ws, src, [".html"]),
                "--table": _paths(ws, src, [".csv", ".json"])}
    if cmd == "compress":
        return {"--ratio": FLOATS, "--method": METHODS, "--allocation": ALLOCATIONS,
                "--layers": REGEXES, "--calib-seqs": INTS, "--seq-len": INTS, "--multiple": INTS,
                "--calib": inputs, "--out": _paths(ws, src, [".safetensors"])}
    return {"--seq-len": INTS, "--max-tokens": INTS, "--skip-tokens": INTS, "--text": inputs,
            "--reference": [str(src), str(ws / "missing"), "", str(ws / "adir")]}


def command_line(d: Draw, ws: Path, sources: dict) -> list[str]:
    """A random command line whose sources and outputs live in workspace `ws`."""
    cmd = d.choice(["analyze", "analyze", "report", "compare", "compress", "evaluate"])
    kinds = ["hf"] if cmd in ("compress", "evaluate") else ["safetensors", "gguf", "hf"]
    src = sources[d.choice(kinds)]
    pool = [str(src), str(ws / "missing.safetensors"), str(ws / "adir"), str(ws / "binary.dat")]
    argv = [cmd, str(src) if d.int(0, 4) else d.choice(pool)]
    if cmd == "compare":
        argv.append(str(sources[d.choice(["safetensors", "gguf"])]) if d.int(0, 4) else d.choice(pool))
    if cmd == "compress" and d.int(0, 5):
        argv += ["--method", "svd"]        # mostly the method that needs no calibration text
    if cmd in ("compress",) and d.int(0, 5):
        argv += ["--out", str(ws / "out" / "c")]
    if cmd == "compress" and d.int(0, 5):
        argv += ["--ratio", d.choice(["0.3", "0.5"])]
    options = _options(cmd, ws, src)
    for _ in range(d.int(0, 4)):
        flag = d.choice(sorted(options))
        argv += [flag, d.choice(options[flag])]
    if cmd == "analyze" and "--rows" not in argv:
        argv += ["--rows", "0"]
    return argv


def cli_case(sources: dict, d: Draw, ws: Path) -> tuple[str, list[str]]:
    """A random command line run in workspace `ws`; (the command line, problems)."""
    import shutil

    local = {}
    for kind in ("safetensors", "gguf", "hf"):   # each case works on its own copies
        path = sources[kind]
        target = ws / path.name
        (shutil.copytree if path.is_dir() else shutil.copy)(path, target)
        local[kind] = target
    for name in ("text.txt", "binary.dat", "adir"):
        seed = sources["safetensors"].parent / name
        (shutil.copytree if seed.is_dir() else shutil.copy)(seed, ws / name)
    argv = command_line(d, ws, local)
    return " ".join(argv), run_cli_case(argv, ws)

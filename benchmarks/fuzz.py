"""Long fuzzing run: mutated safetensors / GGUF / torch .bin files, Hugging Face folders (index,
config.json, shards), saves and saved analyses (reports of them), and random command lines.

    python benchmarks/fuzz.py                  # 10,000 cases (about 1,540 per target, 770 tables)
    python benchmarks/fuzz.py --cases 400 --seed 3 --targets cli,gguf

Each case must end with exit code 0 or 2 (the save loader: a model or a one-line
EigenscopeError), print no traceback, finish within the per-case timer, write nothing outside
its output folder and leave its source unchanged (properties in tests/_fuzz.py). Prints the
cases tried and the failures per target; exit code 1 when any case failed.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _fuzz import RandomDraw, file_case, make_seeds, new_workspace, remove_workspace  # noqa: E402
from _fuzz_cli import cli_case  # noqa: E402

TARGETS = ("safetensors", "gguf", "bin", "folder", "save", "cli", "table")
# cases are dealt in this order; a report (table) costs ~1 s of figures, so it gets half a share
CYCLE = ("safetensors", "gguf", "bin", "folder", "save", "cli") * 2 + ("table",)


def run_case(target: str, seeds: dict, seed: int, root: Path) -> tuple[str, list[str]]:
    d, ws = RandomDraw(seed), new_workspace(root)
    try:
        return cli_case(seeds, d, ws) if target == "cli" else file_case(target, seeds, d, ws)
    finally:
        remove_workspace(ws)


def _kind(target: str, what: str) -> str:
    """The mutation or command of a case, for the case mix."""
    words = what.split()
    return f"{target}: {words[0] if target == 'cli' else words[-1] if target == 'folder' else words[1]}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--show", type=int, default=20, help="failures printed in full")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds before a case is a hang")
    args = ap.parse_args()
    import _fuzz
    _fuzz.CASE_SECONDS = args.timeout
    import logging
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    targets = args.targets.split(",")
    cycle = [t for t in CYCLE if t in targets] or targets
    root = Path(tempfile.mkdtemp(prefix="eigenscope-fuzz-"))
    seeds = make_seeds(root / "seeds")
    tried, failed, kinds, failures = Counter(), Counter(), Counter(), []
    t0 = time.perf_counter()
    for i in range(args.cases):
        target = cycle[i % len(cycle)]
        what, problems = run_case(target, seeds, args.seed * 1_000_003 + i, root)
        tried[target] += 1
        kinds[_kind(target, what)] += 1
        if problems:
            failed[target] += 1
            failures.append((target, args.seed * 1_000_003 + i, what, problems))
        if (i + 1) % 500 == 0:
            print(f"  {i + 1} cases, {sum(failed.values())} failures, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    elapsed = time.perf_counter() - t0
    print(f"\nfuzz: seed {args.seed}, {elapsed:.0f} s ({1000 * elapsed / max(args.cases, 1):.0f} ms a case)")
    print(f"{'target':<12} {'cases':>7} {'failures':>9}")
    for t in targets:
        print(f"{t:<12} {tried[t]:>7} {failed[t]:>9}")
    print(f"{'total':<12} {sum(tried.values()):>7} {sum(failed.values()):>9}")
    print("case mix: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    for target, seed, what, problems in failures[: args.show]:
        print(f"FAILED {target} (case seed {seed}): {what[:200]}\n    " + "\n    ".join(problems))
    import shutil
    shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

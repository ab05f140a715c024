"""A keyed store of tensors that stays in memory up to a byte budget and spills the rest to an
offload folder (one safetensors file per key), so the compression pipeline's stored activations
and gradients never outgrow `max_memory`."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from ..errors import EigenscopeError


class Spill:
    """put / get / pop tensors by key; RAM while `limit` bytes allow, then files in `folder`
    (a fresh temporary folder under `offload_dir`, removed by `close`)."""

    def __init__(self, limit: int, offload_dir=None):
        self.limit, self.offload_dir = int(limit), offload_dir
        self.ram: dict = {}
        self.files: dict = {}
        self.used = self.spilled = 0
        self.folder: Path | None = None

    def put(self, key, t: torch.Tensor) -> None:
        """Store `t` (detached, contiguous) under `key`, replacing what was there."""
        self.pop(key)
        t = t.detach().contiguous()
        n = t.numel() * t.element_size()
        if self.used + n <= self.limit:
            self.ram[key], self.used = t, self.used + n
            return
        path = self._dir() / f"{len(self.files) + len(self.ram)}-{abs(hash(key))}.safetensors"
        try:
            from safetensors.torch import save_file
            save_file({"t": t}, str(path))
        except OSError as e:
            raise EigenscopeError(f"{path.parent}: cannot write offloaded activations "
                                  f"({e.strerror or e}); give --offload-dir a writable folder "
                                  "with free space, or raise --max-memory") from None
        self.files[key] = path
        self.spilled += n

    def get(self, key) -> torch.Tensor:
        """The tensor stored under `key` (read back from its file when spilled)."""
        if key in self.ram:
            return self.ram[key]
        from safetensors.torch import load_file
        return load_file(str(self.files[key]))["t"]

    def pop(self, key) -> None:
        """Forget `key` (its memory or its file)."""
        t = self.ram.pop(key, None)
        if t is not None:
            self.used -= t.numel() * t.element_size()
        path = self.files.pop(key, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def _dir(self) -> Path:
        if self.folder is None:
            base = Path(self.offload_dir) if self.offload_dir is not None else None
            try:
                if base is not None:
                    base.mkdir(parents=True, exist_ok=True)
                self.folder = Path(tempfile.mkdtemp(prefix="eigenscope-offload-", dir=base))
            except OSError as e:
                raise EigenscopeError(f"{base or tempfile.gettempdir()}: cannot create the "
                                      f"offload folder ({e.strerror or e})") from None
        return self.folder

    def close(self) -> None:
        """Drop everything and remove the offload folder."""
        self.ram.clear()
        self.files.clear()
        self.used = 0
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

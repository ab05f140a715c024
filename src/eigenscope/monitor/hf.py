"""Hugging Face Trainer adapter for SpectralMonitor (only when transformers is importable)."""
from __future__ import annotations

from eigenscope.errors import EigenscopeError


def make_callback(monitor):
    """A TrainerCallback whose on_step_end (after the optimizer step) calls monitor.step."""
    try:
        from transformers import TrainerCallback
    except ImportError as exc:  # pragma: no cover - transformers is optional
        raise EigenscopeError("as_trainer_callback needs transformers: pip install transformers") \
            from exc

    class SpectralMonitorCallback(TrainerCallback):
        def __init__(self):
            self.monitor = monitor

        def on_step_end(self, args, state, control, **kwargs):
            self.monitor.step(state.global_step)
            return control

    return SpectralMonitorCallback()

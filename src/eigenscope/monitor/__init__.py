"""Spectral monitoring during training.

>>> import torch
>>> model = torch.nn.Linear(32, 16)
>>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
>>> mon = SpectralMonitor(model, every=1, budget=None, metrics=("spectral_norm", "stable_rank"))
>>> handle = mon.attach(opt)
>>> model(torch.randn(4, 32)).sum().backward(); opt.step()
>>> list(mon.dataframe().columns)
['step', 'name', 'm', 'n', 'method', 'spectral_norm', 'stable_rank']
"""
from eigenscope.monitor.estimate import top_singular
from eigenscope.monitor.monitor import METRICS, SpectralMonitor
from eigenscope.monitor.trace import ActivationTrace

__all__ = ["SpectralMonitor", "ActivationTrace", "top_singular", "METRICS"]

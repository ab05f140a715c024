"""Spectral optimisers: SpectralClip (SPECTRA-style update clipping), Muon, param-group split.

>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 8), nn.Linear(8, 10))
>>> mats, other = split_param_groups(model, head_pattern=r"^2$")
>>> mats["names"], other["names"]
(['1.weight'], ['0.weight', '1.bias', '2.weight', '2.bias'])
>>> opts = [Muon([mats], lr=0.02), torch.optim.AdamW([other], lr=1e-3)]
>>> clipped = SpectralClip(torch.optim.AdamW(model.parameters(), lr=1e-3), c=1e-3)
"""
from eigenscope.optim.clip import SpectralClip
from eigenscope.optim.groups import split_param_groups
from eigenscope.optim.muon import Muon, adjusted_lr, make_muon

__all__ = ["SpectralClip", "Muon", "make_muon", "adjusted_lr", "split_param_groups"]

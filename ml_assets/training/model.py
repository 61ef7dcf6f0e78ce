"""The network: a plain MLP producing one logit (sigmoid is applied by the loss and at scoring)."""

from __future__ import annotations

from torch import nn


def build_model(input_dim: int, hidden: list[int]) -> nn.Module:
    if input_dim < 1:
        raise ValueError(f"input_dim must be >= 1, got {input_dim}")
    bad = [h for h in hidden if int(h) < 1]
    if bad:
        raise ValueError(f"hidden layer sizes must be >= 1, got {list(hidden)}")
    layers: list[nn.Module] = []
    width = input_dim
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        width = int(h)
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)

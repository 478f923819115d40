"""Small torch modules for tests of torch.export archives (.pt2)."""

from __future__ import annotations

import torch


class TwoLayer(torch.nn.Module):
    """Linear 8 -> 3 then ReLU: input `features` FP32 [batch, 8], output FP32 [batch, 3]."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 3)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(features))

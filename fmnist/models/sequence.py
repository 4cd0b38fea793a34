"""Recurrent backbones reading an image one row per time step: input (B, 28, 28)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fmnist.core.constants import IMAGE_SIZE, NUM_CLASSES
from fmnist.models.init import initialise

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RowRNN(nn.Module):
    """An RNN / LSTM / GRU over the 28 rows whose final hidden states (both directions') feed a linear classifier.
    A list of widths in `hidden_size` stacks layers of different sizes (study B's LSTM(784) -> LSTM(186))."""

    def __init__(self, cell: str = "lstm", hidden_size: int | Sequence[int] = 100, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, output_dropout: float = 0.0,
                 init: str = "default", num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        sizes = [hidden_size] if isinstance(hidden_size, int) else [int(size) for size in hidden_size]
        if not sizes:
            raise ValueError("hidden_size must be a width or a non-empty list of widths")
        if len(sizes) > 1 and num_layers != 1:
            raise ValueError("give either num_layers (one width) or a list of widths in hidden_size, not both")
        directions = 2 if bidirectional else 1
        self.rnn = CELLS[cell](IMAGE_SIZE, sizes[0], num_layers=num_layers, batch_first=True,
                               bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        self.stack = nn.ModuleList(
            CELLS[cell](before * directions, after, batch_first=True, bidirectional=bidirectional)
            for before, after in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.between = nn.Dropout(dropout)
        self.output_dropout = nn.Dropout(output_dropout)
        self.classifier = nn.Linear(sizes[-1] * directions, num_classes)
        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, state = self.rnn(x)
        for layer in self.stack:
            outputs, state = layer(self.between(outputs))
        hidden = state[0] if isinstance(state, tuple) else state  # LSTM returns (h_n, c_n)
        directions = 2 if self.rnn.bidirectional else 1
        return self.classifier(self.output_dropout(torch.cat(list(hidden[-directions:]), dim=1)))

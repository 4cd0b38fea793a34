"""Recurrent backbones reading an image one row per time step: input (B, 28, 28)."""

from __future__ import annotations

import torch
from torch import nn

from fmnist.constants import IMAGE_SIZE, NUM_CLASSES

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RowRNN(nn.Module):
    """An RNN / LSTM / GRU over the 28 rows; the final hidden state feeds a linear classifier.

    For a bidirectional network the final states of both directions are joined, so the backward
    direction contributes its summary of the whole image rather than of the last row only.
    """

    def __init__(self, cell: str = "lstm", hidden_size: int = 100, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        self.rnn = CELLS[cell](IMAGE_SIZE, hidden_size, num_layers=num_layers, batch_first=True,
                               bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        self.classifier = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, state = self.rnn(x)
        hidden = state[0] if isinstance(state, tuple) else state  # LSTM returns (h_n, c_n)
        directions = 2 if self.rnn.bidirectional else 1
        return self.classifier(torch.cat(list(hidden[-directions:]), dim=1))

"""Weight initialisation schemes (`model.net.init`): the studies' frameworks initialise differently enough to change
early training, so reproducing a Keras study in PyTorch means re-initialising explicitly."""

from __future__ import annotations

from torch import nn

INIT_SCHEMES = ("default", "glorot", "kaiming", "keras")


def _recurrent_keras(layer: nn.RNNBase) -> None:
    """Keras' recurrent defaults: Glorot-uniform input kernel, orthogonal recurrent kernel, zero bias, and (LSTM
    only) a forget-gate bias of one."""
    gates = {"LSTM": 4, "GRU": 3}.get(layer.mode, 1)
    hidden = layer.hidden_size
    for name, parameter in layer.named_parameters():
        if name.startswith("weight_ih"):
            nn.init.xavier_uniform_(parameter)
        elif name.startswith("weight_hh"):
            for gate in range(gates):  # Keras draws one orthogonal (H, gates*H) matrix; per-gate blocks keep it simple
                nn.init.orthogonal_(parameter.data[gate * hidden : (gate + 1) * hidden])
        elif name.startswith("bias_ih"):
            nn.init.zeros_(parameter)
            if layer.mode == "LSTM":  # PyTorch gate order i, f, g, o: the forget gate is the second block
                nn.init.ones_(parameter.data[hidden : 2 * hidden])
        elif name.startswith("bias_hh"):
            nn.init.zeros_(parameter)  # PyTorch's second bias has no Keras counterpart: zero keeps the sum right


def initialise(net: nn.Module, scheme: str) -> None:
    """Re-initialise `net`'s conv, linear and recurrent layers in place: PyTorch's own (default), Keras' Conv2D/Dense
    (glorot), Kaiming-normal weights (kaiming), or the whole Keras model's, recurrent layers too (keras)."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init must be one of {INIT_SCHEMES}, got {scheme!r}")
    if scheme == "default":
        return
    for layer in net.modules():
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(layer.weight)
                continue
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.RNNBase) and scheme == "keras":
            _recurrent_keras(layer)

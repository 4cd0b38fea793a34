"""Backbones match models.md: exact parameter counts and (B, 10) logits for their input kind."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from fmnist.models import RowRNN
from fmnist.models.init import initialise
from tests.helpers import compose
from tests.helpers.models import KERAS_MOVING_STATISTICS, PARAMS_FROM_MODELS_MD, pytorch_params


def trainable(net: nn.Module) -> int:
    return sum(parameter.numel() for parameter in net.parameters())


def moving_statistics(net: nn.Module) -> int:
    return sum(buffer.numel() for key, buffer in net.named_buffers() if key.endswith(("running_mean", "running_var")))


@pytest.mark.parametrize(("name", "params"), sorted(PARAMS_FROM_MODELS_MD.items()))
def test_parameter_count_and_output_shape(name: str, params: int) -> None:
    cfg = compose("train", f"model={name}")
    net = instantiate(cfg.model.net)
    assert trainable(net) == pytorch_params(name)
    if name in KERAS_MOVING_STATISTICS:
        assert trainable(net) + moving_statistics(net) == params
    x = torch.randn(5, 1, 28, 28) if cfg.model.input == "image" else torch.randn(5, 28, 28)
    assert net(x).shape == (5, 10)


def test_lstm_hidden_64_override_matches_the_study_code() -> None:
    net = instantiate(compose("train", "model=lstm", "model.net.hidden_size=64").model.net)
    assert sum(parameter.numel() for parameter in net.parameters()) == 24_714


def test_keras_batchnorm_settings_in_study_c() -> None:
    net = instantiate(compose("train", "model=conv2dsimple2").model.net)
    norms = [layer for layer in net.modules() if isinstance(layer, nn.BatchNorm2d)]
    assert len(norms) == 2 and all(norm.momentum == 0.01 and norm.eps == 1e-3 for norm in norms)


def test_drop_norm_quirks_are_kept() -> None:
    net = instantiate(compose("train", "model=drop_norm_l2").model.net)
    assert isinstance(net.features[0], nn.BatchNorm2d) and net.features[0].num_features == 1  # BN on the input
    assert isinstance(net.classifier[-1], nn.LeakyReLU)  # LeakyReLU on the logits
    net.eval()
    x = torch.randn(64, 1, 28, 28)
    before_activation = net.classifier[:-1](net.features(x).flatten(1))
    assert (before_activation < 0).any()
    assert torch.allclose(net(x), torch.nn.functional.leaky_relu(before_activation))  # negatives squashed 100x


def test_stacked_lstm_is_two_lstms_with_dropout_between() -> None:
    net = instantiate(compose("train", "model=lstm2_784_186").model.net)
    assert (net.rnn.hidden_size, net.stack[0].input_size, net.stack[0].hidden_size) == (784, 784, 186)
    assert net.between.p == 0.2 and net.output_dropout.p == 0.2


def test_single_width_rownn_state_dict_is_unchanged() -> None:
    """Checkpoints of the one-width RowRNN written before the stacked form existed still load."""
    keys = set(RowRNN(cell="lstm", hidden_size=100).state_dict())
    assert keys == {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
                    "classifier.weight", "classifier.bias"}


def test_rownn_rejects_num_layers_with_a_list_of_widths() -> None:
    with pytest.raises(ValueError, match="not both"):
        RowRNN(hidden_size=[32, 16], num_layers=2)


def test_keras_lstm_init_sets_forget_bias_and_orthogonal_recurrent_blocks() -> None:
    net = RowRNN(cell="lstm", hidden_size=8, init="keras")
    bias_ih, bias_hh = net.rnn.bias_ih_l0.detach(), net.rnn.bias_hh_l0.detach()
    assert torch.equal(bias_ih[8:16], torch.ones(8)) and bias_ih[:8].abs().sum() == 0 and bias_hh.abs().sum() == 0
    block = net.rnn.weight_hh_l0.detach()[16:24]
    assert torch.allclose(block @ block.T, torch.eye(8), atol=1e-5)
    assert net.classifier.bias.abs().sum() == 0


@pytest.mark.parametrize("scheme", ["glorot", "kaiming"])
def test_init_schemes_change_conv_weights(scheme: str) -> None:
    torch.manual_seed(0)
    layer = nn.Conv2d(16, 32, 3)
    before = layer.weight.detach().clone()
    initialise(layer, scheme)
    fan_in, fan_out = 16 * 9, 32 * 9
    expected_std = (2 / (fan_in + fan_out)) ** 0.5 if scheme == "glorot" else (2 / fan_in) ** 0.5
    assert not torch.equal(before, layer.weight)
    assert abs(layer.weight.std().item() - expected_std) < 0.1 * expected_std


def test_unknown_init_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="init must be one of"):
        initialise(nn.Linear(2, 2), "he")
